"""PatchNCE (Park et al., 2020): patch sampling with MLP projection heads, and the contrastive loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.networks.layers import init_weights


class PatchSampleF(nn.Module):
    """Samples `num_patches` locations per feature map and projects them with a 2-layer MLP (netF).

    The MLPs are created on the first call, when the feature widths are known (CUT's
    "data-dependent initialisation"); create the optimizer for F after that call.
    """

    def __init__(self, *, use_mlp: bool = True, nc: int = 256, init_type: str = "normal", init_gain: float = 0.02):
        super().__init__()
        self.use_mlp, self.nc, self.init_type, self.init_gain = use_mlp, nc, init_type, init_gain
        self.mlps = nn.ModuleList()

    @property
    def initialized(self) -> bool:
        return not self.use_mlp or len(self.mlps) > 0

    def create_mlps(self, feats: list[torch.Tensor]) -> None:
        for feat in feats:
            mlp = nn.Sequential(nn.Linear(feat.shape[1], self.nc), nn.ReLU(), nn.Linear(self.nc, self.nc))
            self.mlps.append(init_weights(mlp, init_type=self.init_type, gain=self.init_gain).to(feat.device))

    def forward(self, feats: list[torch.Tensor], num_patches: int,
                patch_ids: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Returns per layer an (N * P, nc) matrix of unit-norm patch embeddings, and the ids used.

        Pass the ids returned for the source image to sample the same locations in the output.
        """
        if self.use_mlp and not self.mlps:
            self.create_mlps(feats)
        out, ids = [], []
        for layer, feat in enumerate(feats):
            flat = feat.flatten(2).transpose(1, 2)  # (N, H*W, C)
            if patch_ids is not None:
                chosen = patch_ids[layer]
            else:
                chosen = torch.randperm(flat.shape[1], device=feat.device)[: min(num_patches, flat.shape[1])]
            sample = flat[:, chosen, :].flatten(0, 1)
            if self.use_mlp:
                sample = self.mlps[layer](sample)
            out.append(F.normalize(sample, dim=1))
            ids.append(chosen)
        return out, ids


def patch_nce_loss(query: torch.Tensor, key: torch.Tensor, *, temperature: float, batch_size: int,
                   negatives_from_minibatch: bool = False) -> torch.Tensor:
    """InfoNCE over patches: for each query patch q_i, its positive is k_i (same location in the
    source) and the negatives are the other sampled patches k_j of the same image:

        l_i = -log( exp(q_i.k_i / T) / (exp(q_i.k_i / T) + sum_{j != i} exp(q_i.k_j / T)) )

    `query`, `key`: (batch_size * P, C) unit vectors; the key is a constant target. Returns l_i
    for every row (N * P,). With `negatives_from_minibatch` the negatives come from every image
    in the batch (CUT's --nce_includes_all_negatives_from_minibatch).
    """
    query, key = query.float(), key.detach().float()  # bfloat16 under --amp
    rows, dim = query.shape
    positive = (query * key).sum(dim=1, keepdim=True)
    groups = 1 if negatives_from_minibatch else batch_size
    q, k = query.view(groups, -1, dim), key.view(groups, -1, dim)
    patches = q.shape[1]
    negatives = torch.bmm(q, k.transpose(1, 2))
    # A patch is not its own negative; -10 / T makes exp() vanish, as in CUT.
    eye = torch.eye(patches, device=query.device, dtype=torch.bool)[None]
    negatives = negatives.masked_fill(eye, -10.0).view(-1, patches)
    logits = torch.cat([positive, negatives], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(rows, dtype=torch.long, device=query.device), reduction="none")
