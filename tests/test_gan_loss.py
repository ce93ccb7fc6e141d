"""The R1 gradient penalty (models/gan_loss.py) against closed forms, and in a training run."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import train
from conftest import run_dir
from models.gan_loss import r1_penalty
from util.run_log import read_jsonl


def test_r1_of_a_linear_patchgan_is_its_weight_norm_times_the_patches():
    """D = 1x1 convolution w: d(sum_patches D)/dx = w at every pixel, so R1 = H * W * |w|^2,
    and dR1/dw = 2 * H * W * w (the graph is kept, so the penalty trains D)."""
    torch.manual_seed(0)
    disc = nn.Conv2d(3, 1, kernel_size=1, bias=True)
    real = torch.randn(4, 3, 5, 7, requires_grad=True)
    r1 = r1_penalty(disc(real), real)
    w = disc.weight.detach().flatten()
    assert r1.item() == pytest.approx(35 * w.pow(2).sum().item(), rel=1e-5)
    r1.backward()
    assert torch.allclose(disc.weight.grad.flatten(), 2 * 35 * w, rtol=1e-5)
    assert disc.bias.grad is None or disc.bias.grad.abs().max() == 0  # a shift of the scores is free


def test_r1_averages_the_squared_gradient_norm_over_the_batch():
    """D(x) = sum x^2 per image: gradient 2x, so R1 = mean_n 4 |x_n|^2."""
    real = torch.randn(3, 2, 4, 4, requires_grad=True)
    r1 = r1_penalty(real.pow(2).sum(dim=(1, 2, 3)).view(3, 1, 1, 1), real)
    assert r1.item() == pytest.approx((4 * real.detach().pow(2).flatten(1).sum(1)).mean().item(), rel=1e-5)


def test_r1_is_logged_in_the_adversarial_stage_only_when_asked(tiny_train_args):
    for name, flags, expect_r1 in (("r1", {"lambda_R1": 1.0}, True), ("plain", {}, False)):
        argv = tiny_train_args(name, coop_epochs=0.5, **flags)
        assert train.main(argv) == 0
        entries = read_jsonl(run_dir(argv) / "loss_log.jsonl")
        adversarial = [e for e in entries if e["stage"] == "adversarial"]
        assert adversarial and len(adversarial) < len(entries)
        assert all(("R1" in e["losses"]) == (expect_r1 and e["stage"] == "adversarial") for e in entries)
        assert all(e["losses"]["R1"] > 0 for e in adversarial if expect_r1)
