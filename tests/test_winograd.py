"""Winograd F(4x4, 3x3) convolutions (models/networks/winograd.py) against the direct convolution:
the output and the gradients for the input, the weights and the bias.

Tolerance: float32 rounding of a different summation order, so errors are relative to the largest
value of the compared tensor: at most TOLERANCE of it (measured: up to ~8e-6 with 256 channels).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from models.networks import winograd
from models.networks.generators import build_generator
from models.networks.winograd import WinogradConv2d, conv2d


@pytest.fixture(autouse=True)
def winograd_at_every_size(monkeypatch):
    """The tests use small maps; the size rule that skips Winograd below 32x32 in training is tested alone."""
    monkeypatch.setattr(winograd, "MIN_TRAIN_PIXELS", 0)


def test_training_after_inference_mode_reuses_the_workspace():
    """In-training evaluation runs under inference_mode, then training goes on with the same buffers."""
    winograd._workspace.buffers.clear()
    torch.manual_seed(0)
    conv = WinogradConv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 40, 40)
    with torch.inference_mode():
        conv.eval()(x)
    conv.train()
    y = conv(x.clone().requires_grad_())
    y.sum().backward()
    assert torch.allclose(y, nn.functional.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-4)


def test_training_on_small_maps_takes_the_direct_convolution(monkeypatch):
    monkeypatch.setattr(winograd, "MIN_TRAIN_PIXELS", 32 * 32)
    torch.manual_seed(0)
    conv = WinogradConv2d(4, 4, 3, padding=1)
    small, large = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 32, 32)
    assert torch.equal(conv(small), nn.functional.conv2d(small, conv.weight, conv.bias, padding=1))
    assert not torch.equal(conv(large), nn.functional.conv2d(large, conv.weight, conv.bias, padding=1))

TOLERANCE = 2e-5


def assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= TOLERANCE * expected.abs().max()


def direct_and_winograd(conv: nn.Conv2d, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """[output, d/dx, d/dweight, (d/dbias)] of sum(output * g) by the direct and the Winograd convolution."""
    results = []
    g = None
    for plain in (True, False):
        x = x.detach().requires_grad_(True)
        conv.zero_grad(set_to_none=True)
        with winograd.disabled() if plain else torch.enable_grad():
            y = conv(x)
        g = torch.randn_like(y, generator=torch.Generator().manual_seed(1)) if g is None else g
        (y * g).sum().backward()
        results.append([y.detach(), x.grad] + [p.grad for p in conv.parameters()])
    return results[0], results[1]


@pytest.mark.parametrize("batch, channels_in, channels_out, height, width, padding, bias", [
    (1, 8, 8, 16, 16, 1, True),      # output a multiple of the 4x4 tile
    (2, 5, 7, 13, 9, 1, False),      # ragged tiles on both axes, a batch
    (1, 3, 4, 6, 7, 0, True),        # unpadded (the residual blocks pad by reflection first)
    (3, 16, 4, 3, 3, 0, True),       # a single output pixel
    (2, 256, 256, 18, 18, 0, True),  # a residual block's width
])
def test_winograd_output_and_gradients_equal_the_direct_convolution(batch, channels_in, channels_out, height,
                                                                    width, padding, bias):
    torch.manual_seed(0)
    conv = WinogradConv2d(channels_in, channels_out, 3, padding=padding, bias=bias)
    expected, got = direct_and_winograd(conv, torch.randn(batch, channels_in, height, width))
    for g, e in zip(got, expected):
        assert_close(g, e)


def test_chunks_of_tile_rows_join_up(monkeypatch):
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # one tile row per chunk: 5 chunks, the last ragged
    torch.manual_seed(0)
    conv = WinogradConv2d(6, 5, 3, padding=1)
    expected, got = direct_and_winograd(conv, torch.randn(2, 6, 18, 11))
    for g, e in zip(got, expected):
        assert_close(g, e)


def test_gradient_only_for_the_input_or_only_for_the_weights():
    torch.manual_seed(0)
    conv = WinogradConv2d(4, 6, 3, padding=1)
    x = torch.randn(1, 4, 9, 10, requires_grad=True)
    with winograd.disabled():
        (expected,) = torch.autograd.grad(conv(x).square().sum(), x)
    conv.requires_grad_(False)
    (got,) = torch.autograd.grad(conv(x).square().sum(), x)
    assert_close(got, expected)
    conv.requires_grad_(True)
    with winograd.disabled():
        expected = torch.autograd.grad(conv(x.detach()).square().sum(), conv.weight)[0]
    assert_close(torch.autograd.grad(conv(x.detach()).square().sum(), conv.weight)[0], expected)


def test_inference_reuses_the_weight_transform_until_the_weights_change():
    torch.manual_seed(0)
    conv = WinogradConv2d(4, 4, 3, padding=1).eval()
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        first = conv(x)
        cached = conv._cached_u[1]
        assert_close(conv(x), first)
        assert conv._cached_u[1] is cached
        conv.weight.mul_(2)  # an in-place update, as an optimizer step does
        with winograd.disabled():
            expected = conv(x)
        assert_close(conv(x), expected)
        assert conv._cached_u[1] is not cached


def test_other_dtypes_and_autocast_run_the_direct_convolution():
    torch.manual_seed(0)
    conv = WinogradConv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 8, 8)
    plain = nn.Conv2d(4, 4, 3, padding=1)
    plain.load_state_dict(conv.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(conv(x), plain(x))
    assert torch.equal(conv.double()(x.double()), plain.double()(x.double()))


def test_same_parameters_and_state_dict_as_nn_conv2d():
    conv = WinogradConv2d(4, 5, 3, padding=1)
    plain = nn.Conv2d(4, 5, 3, padding=1)
    assert conv.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(conv.state_dict())
    assert isinstance(conv, nn.Conv2d)


@pytest.mark.parametrize("args", [dict(stride=2), dict(groups=2), dict(padding=2), dict(dilation=2),
                                  dict(padding=1, padding_mode="reflect")])
def test_refuses_other_convolutions(args):
    with pytest.raises(ValueError, match="3x3, stride-1"):
        WinogradConv2d(4, 4, 3, **args)
    with pytest.raises(ValueError, match="3x3, stride-1"):
        WinogradConv2d(4, 4, 5)


def test_conv2d_picks_winograd_only_where_it_pays():
    wide = winograd.MIN_CHANNELS
    assert type(conv2d(wide, wide, 3, padding=1)) is WinogradConv2d
    assert type(conv2d(wide, wide, 3)) is WinogradConv2d
    assert type(conv2d(wide // 2, wide, 3, padding=1)) is nn.Conv2d  # too narrow on one side
    assert type(conv2d(wide, wide, 3, stride=2, padding=1)) is nn.Conv2d
    assert type(conv2d(wide, wide, 7)) is nn.Conv2d


def test_generator_training_step_equals_the_direct_convolutions():
    """Output and every parameter's gradient of a generator whose blocks and 128 <-> 256 channel
    convolutions run by Winograd (ngf 64, as CUT's default)."""
    torch.manual_seed(0)
    net = build_generator(net="resnet_4blocks", input_nc=3, output_nc=3, ngf=64, norm="instance", dropout=False,
                          antialias=True, antialias_up=True, init_type="xavier", init_gain=0.02)
    assert sum(isinstance(m, WinogradConv2d) for m in net.modules()) == 4 * 2 + 2
    x = torch.rand(2, 3, 24, 24) * 2 - 1
    results = []
    for plain in (True, False):
        net.zero_grad(set_to_none=True)
        with winograd.disabled() if plain else torch.enable_grad():
            y = net(x)
            y.square().mean().backward()
        # Per layer: the biases before instance norm get gradients that are 0 up to rounding (~1e-9),
        # so they are compared on the scale of their layer's weight gradient.
        results.append([y.detach()] + [torch.cat([p.grad.flatten() for p in m.parameters(recurse=False)])
                                       for m in net.modules() if list(m.parameters(recurse=False))])
    for got, expected in zip(results[1], results[0]):
        assert_close(got, expected)


def test_environment_variable_turns_it_off():
    code = ("import torch; from models.networks.winograd import WinogradConv2d;"
            "c = WinogradConv2d(2, 2, 3); x = torch.randn(1, 2, 6, 6);"
            "print(torch.equal(c(x), torch.nn.functional.conv2d(x, c.weight, c.bias)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"COOPINIT_WINOGRAD": "0", "PYTHONPATH": str(Path(__file__).parents[1]),
                              "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip() == "True"
    torch.manual_seed(0)
    conv = WinogradConv2d(2, 2, 3)
    x = torch.randn(1, 2, 6, 6)
    assert not torch.equal(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias))  # on by default
