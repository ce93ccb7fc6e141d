"""PatchGAN discriminators: a map of raw scores, one per overlapping patch (no sigmoid)."""
from __future__ import annotations

import torch
from torch import nn

from models.networks.layers import Downsample, conv_bias, init_weights, norm_layer


class NLayerDiscriminator(nn.Module):
    """PatchGAN with `n_layers` downsampling stages; n_layers=3 is the 70x70 PatchGAN ("basic")."""

    def __init__(self, *, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 antialias: bool = True):
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)

        def stage(c_in: int, c_out: int, normalize: bool) -> list[nn.Module]:
            stride = 1 if antialias else 2
            layers = [nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1, bias=bias if normalize else True)]
            layers += [make_norm(c_out)] if normalize else []
            layers.append(nn.LeakyReLU(0.2, True))
            return layers + ([Downsample(c_out)] if antialias else [])

        layers = stage(input_nc, ndf, normalize=False)
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += stage(ndf * prev, ndf * mult, normalize=True)
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, padding=1, bias=bias), make_norm(ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: scores every pixel independently (colour statistics only)."""

    def __init__(self, *, input_nc: int, ndf: int = 64, norm: str = "instance"):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=conv_bias(norm)), norm_layer(norm)(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=conv_bias(norm)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _patchgan_depth(net: str, n_layers: int) -> int | None:
    """NLayerDiscriminator's depth for --netD (basic is the 3-layer 70x70 PatchGAN), None for pixel;
    ValueError for an unknown net."""
    if net not in ("basic", "n_layers", "pixel"):
        raise ValueError(f"unknown --netD {net!r}; choose basic, n_layers or pixel")
    return {"basic": 3, "n_layers": n_layers}.get(net)


def min_input_side(*, net: str, n_layers: int, norm: str, antialias: bool, batch_size: int) -> int:
    """Smallest square input side the discriminator `build_discriminator` makes can be trained on.

    Walks the side through the layers above: every convolution and blur must keep a pixel (and the
    blur's reflection padding needs two), and a normalised map needs more than one value per channel
    (instance norm: more than one pixel; batch norm: that too at batch size 1). Raises ValueError on
    an unknown `net`.
    """
    depth = _patchgan_depth(net, n_layers)
    norm_side = 2 if norm == "instance" or (norm == "batch" and batch_size == 1) else 1
    if depth is None:  # pixel: 1x1 convolutions, only the norm needs space
        return norm_side
    side = 1
    while not _nlayer_fits(side, n_layers=depth, norm_side=norm_side, antialias=antialias):
        side += 1
    return side


def _nlayer_fits(side: int, *, n_layers: int, norm_side: int, antialias: bool) -> bool:
    """Whether a square input of `side` pixels passes every layer of NLayerDiscriminator."""
    for n in range(n_layers):  # the strided (or blurred) stages; stage 0 has no norm
        side = side - 1 if antialias else (side - 2) // 2 + 1  # 4x4 convolution, padding 1
        if side < (norm_side if n else 1):
            return False
        if antialias:
            if side < 2:  # Downsample's reflection padding of 1
                return False
            side = (side - 1) // 2 + 1  # 3x3 blur, padding 1, stride 2
    side -= 1  # the last two 4x4 convolutions, padding 1: normalised, then the score map
    return side >= norm_side and side - 1 >= 1


def build_discriminator(*, net: str, input_nc: int, ndf: int, n_layers: int, norm: str, antialias: bool,
                        init_type: str, init_gain: float) -> nn.Module:
    depth = _patchgan_depth(net, n_layers)
    if depth is None:
        disc = PixelDiscriminator(input_nc=input_nc, ndf=ndf, norm=norm)
    else:
        disc = NLayerDiscriminator(input_nc=input_nc, ndf=ndf, n_layers=depth, norm=norm, antialias=antialias)
    return init_weights(disc, init_type=init_type, gain=init_gain)
