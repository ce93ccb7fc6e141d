"""test.py's speed paths: Winograd convolutions (tests/test_winograd.py tests them alone), bfloat16
weights with --amp, the allocator setting.

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
from models.networks.winograd import WinogradConv2d
from options.test_options import TestOptions


def translation_model(dataroot, *extra: str):
    opt = TestOptions().parse(["--dataroot", str(dataroot), "--gpu_ids", "-1", "--ngf", "64",
                               "--netG", "resnet_4blocks", *extra])
    return create_model(opt, torch.device("cpu"))


def test_float32_translation_uses_winograd_and_keeps_the_translation(toy_dataroot):
    model = translation_model(toy_dataroot)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    model.prepare_inference()
    assert not model.netG.training
    assert sum(isinstance(m, WinogradConv2d) for m in model.netG.modules()) == 4 * 2 + 2  # blocks, 128<->256
    with winograd.disabled():
        exact = model.translate(images)
    fast = model.translate(images)
    assert fast.dtype == torch.float32 and (fast - exact).abs().max() < 1e-4


def test_prepare_inference_with_amp_casts_weights_to_bfloat16(toy_dataroot):
    model = translation_model(toy_dataroot, "--amp")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        exact = model.netG(images)
    model.prepare_inference()
    assert {p.dtype for p in model.netG.parameters()} == {torch.bfloat16}
    fast = model.translate(images)  # WinogradConv2d in bfloat16 is nn.Conv2d
    assert fast.dtype == torch.float32
    assert (fast - exact).abs().max() < 0.05  # bfloat16 keeps ~3 significant digits


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("opt_out, expected", [("", "True"), ("1", "False")])
def test_keep_freed_memory_sets_glibc_malloc_unless_opted_out(opt_out, expected):
    code = "from util.runtime import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"COOPINIT_MALLOC_TRIM": opt_out, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert out.stdout.strip() == expected

