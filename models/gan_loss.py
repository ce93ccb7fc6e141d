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
