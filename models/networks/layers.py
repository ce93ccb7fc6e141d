"""Layers shared by generators and discriminators: normalization, anti-aliased resampling, init."""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def norm_layer(kind: str) -> Callable[[int], nn.Module]:
    """Factory for a normalization layer over `channels`: instance (no affine, no running stats, as
    CUT), batch, or none."""
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "none":
        return lambda channels: nn.Identity()
    raise ValueError(f"unknown normalization {kind!r}: use instance, batch or none")


def conv_bias(norm: str) -> bool:
    """Convolutions before a normalization with its own shift need no bias; instance norm here has none."""
    return norm != "batch"


def _binomial_filter(size: int) -> torch.Tensor:
    """2-D binomial (blur) filter of `size` taps (rows of Pascal's triangle), normalised to sum 1."""
    taps = torch.tensor([float(math.comb(size - 1, k)) for k in range(size)])
    kernel = taps[:, None] * taps[None, :]
    return kernel / kernel.sum()


class Downsample(nn.Module):
    """Blur then subsample by 2 (Zhang 2019, "Making convolutional networks shift-invariant again"):
    reflect-pad, depthwise 3x3 binomial filter [1, 2, 1], stride 2."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("kernel", _binomial_filter(3)[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel, stride=2, groups=self.channels)


class Upsample(nn.Module):
    """Upsample by 2 with CUT's anti-aliasing filter: zero-insertion then the 4-tap binomial blur
    [1, 3, 3, 1] with replicate padding. That is exactly bilinear interpolation with half-pixel
    centres (weights 3/4, 1/4, clamped edges), which runs far faster than the depthwise
    transposed convolution CUT uses; tests/test_networks.py checks the equality."""

    @staticmethod
    def transposed_filter() -> torch.Tensor:
        """The (4, 4) filter of CUT's transposed-convolution form of this upsampling: the binomial
        [1, 3, 3, 1] blur, times 4 for the inserted zeros. CUT stores it per channel as a buffer
        `filt`; reading its checkpoints checks theirs against this one."""
        return _binomial_filter(4) * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def init_weights(net: nn.Module, *, init_type: str = "xavier", gain: float = 0.02) -> nn.Module:
    """CUT's initialisation: conv/linear weights by `init_type`, biases 0, batch-norm scale N(1, gain)."""
    def init(m: nn.Module) -> None:
        name = type(m).__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in name or "Linear" in name):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise ValueError(f"unknown --init_type {init_type!r}")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net.apply(init)
