"""test.py's speed paths: Winograd convolutions, bfloat16 weights with --amp, the allocator setting.

Each must compute the same translation as the plain float32 generator, up to rounding."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from models import create_model
from models.networks import winograd
from models.networks.generators import build_generator
from models.networks.winograd import WinogradConv3x3, use_winograd
from options.test_options import TestOptions


@pytest.mark.parametrize("batch, channels_in, channels_out, height, width, padding, bias", [
    (1, 8, 8, 16, 16, 1, True),     # output a multiple of the 4x4 tile
    (2, 5, 7, 13, 9, 1, False),     # ragged tiles on both axes, a batch
    (1, 3, 4, 6, 7, 0, True),       # unpadded (the residual blocks pad by reflection first)
    (3, 16, 4, 3, 3, 0, True),      # a single output pixel
])
def test_winograd_equals_direct_convolution(batch, channels_in, channels_out, height, width, padding, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(channels_in, channels_out, 3, padding=padding, bias=bias)
    x = torch.randn(batch, channels_in, height, width)
    with torch.no_grad():
        expected = conv(x)
    got = WinogradConv3x3(conv)(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, rtol=0, atol=1e-5 * expected.abs().max())


def test_winograd_chunks_of_tile_rows_join_up(monkeypatch):
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)  # one tile row per chunk: 5 chunks, the last ragged
    conv = nn.Conv2d(6, 5, 3, padding=1)
    x = torch.randn(2, 6, 18, 11)
    with torch.no_grad():
        expected = conv(x)
    assert torch.allclose(WinogradConv3x3(conv)(x), expected, rtol=0, atol=1e-5 * expected.abs().max())


@pytest.mark.parametrize("conv", [nn.Conv2d(4, 4, 3, stride=2), nn.Conv2d(4, 4, 7), nn.Conv2d(4, 4, 3, groups=2),
                                  nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
                                  nn.Conv2d(4, 4, 3, dilation=2)])
def test_winograd_refuses_other_convolutions(conv):
    with pytest.raises(ValueError, match="3x3, stride-1"):
        WinogradConv3x3(conv)


def test_use_winograd_converts_the_wide_residual_convolutions_only():
    torch.manual_seed(0)
    net = build_generator(net="resnet_4blocks", input_nc=3, output_nc=3, ngf=64, norm="instance", dropout=False,
                          antialias=True, antialias_up=True, init_type="normal", init_gain=0.02).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = net(x)
    assert use_winograd(net) == 8  # two per block; the 64/128-channel and 7x7 convolutions stay direct
    assert sum(isinstance(m, WinogradConv3x3) for m in net.modules()) == 8
    with torch.no_grad():
        assert (net(x) - expected).abs().max() < 1e-4


def translation_model(dataroot, *extra: str):
    opt = TestOptions().parse(["--dataroot", str(dataroot), "--gpu_ids", "-1", "--ngf", "64",
                               "--netG", "resnet_4blocks", *extra])
    return create_model(opt, torch.device("cpu"))


def test_prepare_inference_float32_uses_winograd_and_keeps_the_translation(toy_dataroot):
    model = translation_model(toy_dataroot)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    exact = model.translate(images)
    model.prepare_inference()
    assert not model.netG.training
    assert any(isinstance(m, WinogradConv3x3) for m in model.netG.modules())
    fast = model.translate(images)
    assert fast.dtype == torch.float32 and (fast - exact).abs().max() < 1e-4


def test_prepare_inference_with_amp_casts_weights_to_bfloat16(toy_dataroot):
    model = translation_model(toy_dataroot, "--amp")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        exact = model.netG(images)
    model.prepare_inference()
    assert {p.dtype for p in model.netG.parameters()} == {torch.bfloat16}
    assert not any(isinstance(m, WinogradConv3x3) for m in model.netG.modules())
    fast = model.translate(images)
    assert fast.dtype == torch.float32
    assert (fast - exact).abs().max() < 0.05  # bfloat16 keeps ~3 significant digits


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("opt_out, expected", [("", "True"), ("1", "False")])
def test_keep_freed_memory_sets_glibc_malloc_unless_opted_out(opt_out, expected):
    code = "from util.runtime import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"COOPINIT_MALLOC_TRIM": opt_out, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert out.stdout.strip() == expected

