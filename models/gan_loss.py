"""Adversarial objectives on a PatchGAN's raw score map."""
from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_MODES = ("lsgan", "vanilla", "nonsaturating", "wgangp")


def gan_loss(scores: torch.Tensor, *, target_is_real: bool, mode: str) -> torch.Tensor:
    """Mean loss of `scores` against the real/fake label.

    lsgan: (D - t)^2;  vanilla: BCE-with-logits;  nonsaturating: softplus(-D) for real,
    softplus(D) for fake;  wgangp: -D for real, D for fake (the gradient penalty is not used by CUT).
    """
    scores = scores.float()  # bfloat16 under --amp: the loss itself in float32
    if mode == "lsgan":
        return F.mse_loss(scores, torch.full_like(scores, 1.0 if target_is_real else 0.0))
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(scores, torch.full_like(scores, 1.0 if target_is_real else 0.0))
    if mode == "nonsaturating":
        return F.softplus(-scores if target_is_real else scores).mean()
    if mode == "wgangp":
        return -scores.mean() if target_is_real else scores.mean()
    raise ValueError(f"unknown --gan_mode {mode!r}; choose one of {', '.join(GAN_MODES)}")


def r1_penalty(scores_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 = E_x ||grad_x sum_patches D(x)||^2 over real images x: the gradient penalty of Mescheder
    et al., "Which Training Methods for GANs do actually Converge?" (ICML 2018), eq. 9, without
    its gamma / 2. It keeps D flat on the real data, so G is pushed by D's ranking of whole
    patches rather than by sharp pixel-level gradients.

    scores_real: D's score map (N, 1, H', W') computed from `real` (N, C, H, W), which must
    require grad; the graph is kept so that the penalty trains D. Returns a scalar.
    """
    (grad,) = torch.autograd.grad(scores_real.float().sum(), real, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()
