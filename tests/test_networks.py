"""Generators, discriminators, anti-aliased resampling and initialisation (models/networks)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.networks.discriminators import build_discriminator, min_input_side
from models.networks.generators import RESNET_BLOCKS, build_generator
from models.networks.layers import Downsample, Upsample


def generator(net="resnet_4blocks", *, input_nc=3, output_nc=3, ngf=4, antialias=True, antialias_up=True,
              init_type="xavier", norm="instance"):
    return build_generator(net=net, input_nc=input_nc, output_nc=output_nc, ngf=ngf, norm=norm, dropout=False,
                           antialias=antialias, antialias_up=antialias_up, init_type=init_type, init_gain=0.02)


def discriminator(net="basic", *, input_nc=3, n_layers=3, antialias=True):
    return build_discriminator(net=net, input_nc=input_nc, ndf=4, n_layers=n_layers, norm="instance",
                               antialias=antialias, init_type="xavier", init_gain=0.02)


def assert_gradients_reach_every_parameter(net: nn.Module, output: torch.Tensor) -> None:
    # A random projection, so no gradient cancels by symmetry.
    (output * torch.randn_like(output)).sum().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        if param.dim() > 1:  # biases right before an instance norm get (numerically) zero gradient, as in CUT
            assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("antialias,antialias_up", [(True, True), (False, False), (True, False), (False, True)])
@pytest.mark.parametrize("net", sorted(RESNET_BLOCKS))
def test_generator_keeps_size_for_multiples_of_4(net, antialias, antialias_up):
    torch.manual_seed(0)
    g = generator(net, antialias=antialias, antialias_up=antialias_up)
    for height, width in [(12, 12), (20, 12), (16, 28)]:
        out = g(torch.randn(2, 3, height, width))
        assert out.shape == (2, 3, height, width)
        assert out.abs().max() <= 1  # tanh


@pytest.mark.parametrize("input_nc,output_nc", [(1, 1), (1, 3), (3, 1), (3, 3)])
def test_generator_channels_and_gradients(input_nc, output_nc):
    torch.manual_seed(0)
    g = generator(input_nc=input_nc, output_nc=output_nc)
    out = g(torch.randn(2, input_nc, 16, 16))
    assert out.shape == (2, output_nc, 16, 16)
    assert_gradients_reach_every_parameter(g, out)


@pytest.mark.parametrize("antialias", [True, False])
def test_generator_gradients_without_antialias(antialias):
    torch.manual_seed(0)
    g = generator(antialias=antialias, antialias_up=antialias)
    assert_gradients_reach_every_parameter(g, g(torch.randn(1, 3, 16, 16)))


@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("net,n_layers,side", [("basic", 3, 6), ("n_layers", 3, 6), ("n_layers", 2, 14),
                                               ("pixel", 3, 64)])
def test_discriminator_score_map_shape_and_gradients(net, n_layers, side, antialias):
    torch.manual_seed(0)
    d = discriminator(net, n_layers=n_layers, antialias=antialias)
    scores = d(torch.randn(2, 3, 64, 64))
    assert scores.shape == (2, 1, side, side)
    assert_gradients_reach_every_parameter(d, scores)


@pytest.mark.parametrize("net", ["basic", "pixel"])
def test_discriminator_grayscale_input(net):
    assert discriminator(net, input_nc=1)(torch.randn(1, 1, 64, 64)).shape[:2] == (1, 1)


def test_downsample_blurs_then_halves():
    down = Downsample(2)
    constant = torch.full((1, 2, 10, 14), 0.7)
    out = down(constant)
    assert out.shape == (1, 2, 5, 7)
    torch.testing.assert_close(out, torch.full_like(out, 0.7))
    # An impulse at (4, 6) lands on output (2, 3) with the centre weight of [1,2,1] x [1,2,1] / 16.
    impulse = torch.zeros(1, 2, 10, 14)
    impulse[:, :, 4, 6] = 1.0
    out = down(impulse)
    assert out[0, 0, 2, 3].item() == pytest.approx(4 / 16)
    assert out.sum().item() == pytest.approx(2 * 4 / 16)


def cut_upsample(x: torch.Tensor) -> torch.Tensor:
    """CUT's anti-aliased upsampling, written out: replicate-pad 1, insert zeros (stride 2), blur with
    the 4-tap binomial [1, 3, 3, 1] / 8 per axis (x 2 per axis for the zeros), crop to twice the size."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8 * 2
    kernel = (taps[:, None] * taps[None, :]).repeat(x.shape[1], 1, 1, 1)
    out = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, stride=2, padding=2,
                             groups=x.shape[1])
    return out[:, :, 1:-1, 1:-1]


def test_upsample_is_cuts_blur_upsampling():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 7)
    out = Upsample()(x)
    assert out.shape == (2, 3, 10, 14)
    torch.testing.assert_close(out, cut_upsample(x))


def test_upsample_keeps_constants_and_ramps():
    constant = torch.full((2, 3, 5, 7), -0.3)
    torch.testing.assert_close(Upsample()(constant), torch.full((2, 3, 10, 14), -0.3))  # borders included
    ramp = torch.arange(8.0).repeat(1, 1, 8, 1)  # the interior of a linear ramp stays linear
    row = Upsample()(ramp)[0, 0, 4, 2:-2]
    torch.testing.assert_close(row[1:] - row[:-1], torch.full((11,), 0.5))


@pytest.mark.parametrize("antialias", [True, False])
def test_encode_taps_cuts_layers(antialias):
    """CUT's --nce_layers 0,4,8,12,16: padded input, the two downsampling convs, residual blocks 1 and 5."""
    torch.manual_seed(0)
    ngf, side = 4, 32
    g = generator("resnet_9blocks", ngf=ngf, antialias=antialias)
    x = torch.randn(2, 3, side, side)
    feats = g.encode(x, [0, 4, 8, 12, 16])
    # Without anti-aliasing the downsampling convs have stride 2 themselves (and the indices shift, as in CUT).
    early = 1 if antialias else 2
    expected = [(3, side + 6), (2 * ngf, side // early), (4 * ngf, side // 2 // early), (4 * ngf, side // 4),
                (4 * ngf, side // 4)]
    assert [(f.shape[1], f.shape[2]) for f in feats] == expected
    for index, feat in zip([0, 4, 8, 12, 16], feats):
        # Without anti-aliasing layer 8 is a norm whose output the next (in-place) ReLU overwrites, as in CUT.
        end = index + 2 if (index, antialias) == (8, False) else index + 1
        torch.testing.assert_close(feat, g.model[:end](x))
    assert type(g.model[4]) is nn.Conv2d
    blocks_up_to = [sum(type(m).__name__ == "ResnetBlock" for m in g.model[: i + 1]) for i in (12, 16)]
    assert blocks_up_to == ([1, 5] if antialias else [3, 7])


@pytest.mark.parametrize("init_type,expected_std", [
    ("xavier", 0.02 * math.sqrt(2.0 / (2 * 64 * 9))),  # 64 -> 64 channels, 3x3: fan_in = fan_out = 576
    ("normal", 0.02),
])
def test_init_scale_and_zero_biases(init_type, expected_std):
    torch.manual_seed(0)
    g = generator("resnet_4blocks", ngf=16, init_type=init_type)
    block_conv = g.model[12].conv_block[1]
    assert block_conv.weight.shape == (64, 64, 3, 3)
    assert block_conv.weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert abs(block_conv.weight.mean().item()) < expected_std / 20
    for module in g.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.bias is not None:
            assert torch.count_nonzero(module.bias) == 0


def trains_on(net: nn.Module, side: int, batch_size: int) -> bool:
    """Whether a training-mode forward pass takes a batch of side x side images."""
    try:
        net.train()(torch.zeros(batch_size, 3, side, side))
    except (RuntimeError, ValueError):  # too small for a kernel, a padding or a normalisation
        return False
    return True


@pytest.mark.parametrize("net, n_layers, norm, antialias, batch_size, expected", [
    ("basic", 3, "instance", True, 1, 24),
    ("basic", 3, "instance", False, 1, 24),
    ("basic", 3, "none", True, 1, None),
    ("basic", 3, "batch", True, 1, None),
    ("basic", 3, "batch", True, 2, None),
    ("n_layers", 1, "instance", True, 1, 6),
    ("n_layers", 2, "instance", False, 1, 12),
    ("n_layers", 4, "instance", True, 1, 48),
    ("n_layers", 5, "batch", False, 1, 96),
    ("pixel", 3, "instance", True, 1, 2),
    ("pixel", 3, "none", True, 1, 1),
])
def test_min_input_side_is_the_smallest_side_the_discriminator_trains_on(net, n_layers, norm, antialias,
                                                                         batch_size, expected):
    disc = build_discriminator(net=net, input_nc=3, ndf=2, n_layers=n_layers, norm=norm, antialias=antialias,
                               init_type="xavier", init_gain=0.02)
    side = min_input_side(net=net, n_layers=n_layers, norm=norm, antialias=antialias, batch_size=batch_size)
    assert expected is None or side == expected
    assert all(trains_on(disc, s, batch_size) for s in range(side, side + 5))
    assert side == 1 or not trains_on(disc, side - 1, batch_size)


@pytest.mark.parametrize("antialias", [True, False])
def test_generator_min_side_is_the_smallest_multiple_of_its_size_multiple_it_trains_on(antialias):
    gen = generator(antialias=antialias, antialias_up=antialias)
    assert gen.min_side % gen.size_multiple == 0 and trains_on(gen, gen.min_side, 1)
    assert not trains_on(gen, gen.min_side - gen.size_multiple, 1)
