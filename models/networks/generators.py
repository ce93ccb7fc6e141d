"""ResNet encoder/decoder generator (Johnson et al.), as CUT builds it, with feature taps for PatchNCE."""
from __future__ import annotations

import torch
from torch import nn

from models.networks.layers import Downsample, Upsample, conv_bias, init_weights, norm_layer
from models.networks.winograd import conv2d

RESNET_BLOCKS = {"resnet_9blocks": 9, "resnet_6blocks": 6, "resnet_4blocks": 4}


class ResnetBlock(nn.Module):
    """x + conv(relu(norm(conv(x)))), reflection padded."""

    def __init__(self, channels: int, *, norm: str, dropout: bool):
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers = [nn.ReflectionPad2d(1), conv2d(channels, channels, 3, bias=bias), make_norm(channels),
                  nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), conv2d(channels, channels, 3, bias=bias), make_norm(channels)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """c7s1-ngf, two stride-2 downsamplings, n residual blocks, two upsamplings, c7s1-output, tanh.

    The layer list keeps CUT's order, so `--nce_layers 0,4,8,12,16` taps the same features:
    the padded input, the two downsampling convolutions and residual blocks 1 and 5.
    """

    size_multiple = 4  # two stride-2 downsamplings: other sides do not come back the same size
    min_side = 2 * size_multiple  # the residual blocks' reflection padding needs 2 px after both downsamplings

    def __init__(self, *, input_nc: int, output_nc: int, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", dropout: bool = False, antialias: bool = True,
                 antialias_up: bool = True):
        super().__init__()
        make_norm, bias = norm_layer(norm), conv_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias),
                                   make_norm(ngf), nn.ReLU(True)]
        channels = ngf
        for _ in range(2):
            if antialias:
                layers += [conv2d(channels, channels * 2, 3, padding=1, bias=bias), make_norm(channels * 2),
                           nn.ReLU(True), Downsample(channels * 2)]
            else:
                layers += [nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1, bias=bias),
                           make_norm(channels * 2), nn.ReLU(True)]
            channels *= 2
        layers += [ResnetBlock(channels, norm=norm, dropout=dropout) for _ in range(n_blocks)]
        for _ in range(2):
            if antialias_up:
                layers += [Upsample(), conv2d(channels, channels // 2, 3, padding=1, bias=bias),
                           make_norm(channels // 2), nn.ReLU(True)]
            else:
                layers += [nn.ConvTranspose2d(channels, channels // 2, 3, stride=2, padding=1, output_padding=1,
                                              bias=bias), make_norm(channels // 2), nn.ReLU(True)]
            channels //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def encode(self, x: torch.Tensor, layers: list[int]) -> list[torch.Tensor]:
        """Outputs of the given layer indices, running the network only as far as the last one."""
        return self._run(x, layers, stop_after=max(layers))[1]

    def forward_with_features(self, x: torch.Tensor, layers: list[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """G(x) and the given layers' outputs on the way: PatchNCE's keys come free with the translation."""
        return self._run(x, layers, stop_after=len(self.model) - 1)

    def _run(self, x: torch.Tensor, layers: list[int], *, stop_after: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        wanted, feats = set(layers), []
        for index, layer in enumerate(self.model):
            x = layer(x)
            if index in wanted:
                feats.append(x)
            if index == stop_after:
                break
        return x, feats


def build_generator(*, net: str, input_nc: int, output_nc: int, ngf: int, norm: str, dropout: bool,
                    antialias: bool, antialias_up: bool, init_type: str, init_gain: float) -> ResnetGenerator:
    if net not in RESNET_BLOCKS:
        raise ValueError(f"unknown --netG {net!r}; choose one of {', '.join(RESNET_BLOCKS)}")
    generator = ResnetGenerator(input_nc=input_nc, output_nc=output_nc, ngf=ngf, n_blocks=RESNET_BLOCKS[net],
                                norm=norm, dropout=dropout, antialias=antialias, antialias_up=antialias_up)
    return init_weights(generator, init_type=init_type, gain=init_gain)
