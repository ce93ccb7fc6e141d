"""Cooperative learning pieces for any generator/discriminator pair (CoopInit stage 1).

The discriminator ``D`` is read as an energy-based model over target samples:

    p(y) ∝ exp(f(y)) q(y),   f(y) = sum over patches of D(y),   q = N(0, s_ref^2 I)
    E(y) = ||y||^2 / (2 s_ref^2) - f(y)

Generator proposals are revised by Langevin dynamics on E; D learns by maximum likelihood
(data vs revised samples) and G learns to reproduce the revision (MCMC teaching).
Nothing here knows about CUT; see docs/coopinit.md (flags, calibration, the switch).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NonFiniteError(RuntimeError):
    """A cooperative quantity became NaN/inf; ``quantity`` names it (e.g. "langevin energy")."""

    def __init__(self, quantity: str) -> None:
        super().__init__(f"non-finite {quantity}")
        self.quantity = quantity


@dataclass(frozen=True)
class LangevinStats:
    """Chain diagnostics as detached scalar tensors (no host sync until the caller logs them)."""

    mean_abs_change: Tensor  # mean |y_K - y_0| over all pixels
    score_start: Tensor  # mean f(y_0)
    score_end: Tensor  # mean f(y_K)
    frac_improved: Tensor  # fraction of chains with f(y_K) > f(y_0)


def patch_score(discriminator: nn.Module, images: Tensor) -> Tensor:
    """f(y) = sum over patches of D(y): raw scores (N, 1, h, w), (N, 1) or (N,) -> (N,)."""
    scores = discriminator(images).float()  # sums of many patches: float32 even under autocast
    return scores.flatten(1).sum(1) if scores.dim() > 1 else scores


def energy(scores: Tensor, images: Tensor, *, ref_sigma: float) -> Tensor:
    """E(y) = ||y||^2 / (2 s_ref^2) - f(y), per sample (N,), from f(y) = ``scores``."""
    return images.flatten(1).pow(2).sum(1) / (2.0 * ref_sigma**2) - scores


def langevin_revise(
    discriminator: nn.Module,
    start: Tensor,
    *,
    steps: int,
    step_size: float,
    ref_sigma: float,
    noise: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, LangevinStats]:
    """Revise ``start`` by K Langevin steps on E (D fixed, gradients w.r.t. y only):

        y_{k+1} = y_k - (delta^2 / 2) grad_y E(y_k) + delta * eps_k,   eps_k ~ N(0, I)
                = (1 - delta^2 / (2 s_ref^2)) y_k + (delta^2 / 2) grad_y f(y_k) + delta * eps_k

    Each step's graph is freed before the next, so memory is flat in K. Gradients are taken
    with ``torch.autograd.grad`` w.r.t. y only, so D's ``.grad`` and ``requires_grad`` flags are
    untouched (freezing D's parameters measured no faster on CPU). D runs in its current
    train/eval mode, so batch-norm running statistics would update in train mode.
    Raises NonFiniteError if the final image or any score is NaN/inf (one host sync).
    """
    shrink = 1.0 - step_size**2 / (2.0 * ref_sigma**2)
    drift = step_size**2 / 2.0
    # float32 chain: under --amp G's output is bfloat16, whose spacing (2^-8) rounds the steps away
    y = start.detach().float().clone()
    eps = torch.empty_like(y) if noise and steps > 0 else None
    # Running sum of scores over all steps: one cheap reduction to check finiteness at the end.
    score_trace = y.new_zeros(())
    score_start: Tensor | None = None
    with torch.enable_grad():
        for _ in range(steps):
            y.requires_grad_(True)
            f = patch_score(discriminator, y)
            (grad_f,) = torch.autograd.grad(f.sum(), y)
            y.requires_grad_(False)
            f = f.detach()
            score_trace = score_trace + f.sum()
            if score_start is None:
                score_start = f
            with torch.no_grad():
                y.mul_(shrink).add_(grad_f, alpha=drift)
                if eps is not None:
                    y.add_(eps.normal_(generator=generator), alpha=step_size)
    with torch.no_grad():
        score_end = patch_score(discriminator, y)
    if score_start is None:  # K = 0: the chain is the identity
        score_start = score_end

    with torch.no_grad():
        finite = torch.stack(
            (torch.isfinite(y).all(), torch.isfinite(score_trace + score_end.sum()))
        ).tolist()
        if not finite[0]:
            raise NonFiniteError("langevin image")
        if not finite[1]:
            raise NonFiniteError("langevin energy")
        stats = LangevinStats(
            mean_abs_change=(y - start).abs().mean(),
            score_start=score_start.mean(),
            score_end=score_end.mean(),
            frac_improved=(score_end > score_start).float().mean(),
        )
    return y, stats


def mle_loss(scores_data: Tensor, scores_revised: Tensor, *, energy_reg: float = 0.0) -> Tensor:
    """EBM maximum-likelihood loss for D (``scores_revised`` should come from detached samples):

    L = mean f(y_tilde) - mean f(y) + alpha * (mean f(y)^2 + mean f(y_tilde)^2)
    """
    loss = scores_revised.mean() - scores_data.mean()
    if energy_reg:
        loss = loss + energy_reg * (scores_data.pow(2).mean() + scores_revised.pow(2).mean())
    return loss


def teach_loss(revised: Tensor, proposal: Tensor) -> Tensor:
    """MCMC teaching loss for G: mean((y_tilde - G(x))^2), with y_tilde a constant target."""
    return F.mse_loss(proposal.float(), revised.detach().float())
