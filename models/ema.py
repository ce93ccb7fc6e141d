"""Exponential moving average of the generator, the network test.py translates with.

Yazıcı et al., "The Unusual Effectiveness of Averaging in GAN Training", ICLR 2019: averaging G's
weights over the last steps smooths out the adversarial oscillation of the final iterate. On the
demo (docs/results.md, "Why not every silhouette") d = 0.99 kept more outlines, changed the
background less and lowered FID on every seed; d = 0.995 (the default) kept more outlines still, with
less background change and less stripe contrast; from d = 0.997
the stripes fade, and d = 0.998 broke, because the averaged weights and the averaged batch-norm
statistics stopped fitting each other (statistics recomputed for the averaged weights bring the
stripes back, with no more outlines kept than at 0.995). On a run too short for G to settle the
average can lag G: on cat2dog with 60 images per domain and 720 iterations it raised plain CUT's
final FID on most seeds (docs/results.md, "CUT vs CoopInit-CUT", has the numbers).
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of `model` to average into (no gradients; same device and dtype)."""
    return copy.deepcopy(model).requires_grad_(False)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, *, decay: float) -> None:
    """theta_ema <- decay * theta_ema + (1 - decay) * theta, in place, for every floating-point
    parameter and buffer (batch-norm running statistics too); integer buffers (BatchNorm's
    num_batches_tracked) are copied. `ema` and `model` must share one architecture; decay in [0, 1)."""
    for averaged, current in zip(ema.state_dict().values(), model.state_dict().values(), strict=True):
        if averaged.is_floating_point():
            averaged.lerp_(current.to(averaged.dtype), 1.0 - decay)
        else:
            averaged.copy_(current)
