"""The moving average of G (models/ema.py): its update, and that test.py translates with it."""
from __future__ import annotations

import torch
from torch import nn

import train
from conftest import run_dir
from models import load_translator
from models.ema import ema_copy, update_ema
from util.checkpoint import safe_load


def test_update_follows_the_equation_for_weights_and_batch_norm_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    ema = ema_copy(model)
    assert not any(p.requires_grad for p in ema.parameters())
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    model(torch.randn(2, 3, 8, 8))  # moves the running statistics and num_batches_tracked
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    update_ema(ema, model, decay=0.9)
    for key, value in ema.state_dict().items():
        current = model.state_dict()[key]
        if value.is_floating_point():  # theta_ema <- d * theta_ema + (1 - d) * theta
            torch.testing.assert_close(value, 0.9 * before[key] + 0.1 * current)
        else:
            assert torch.equal(value, current)  # num_batches_tracked is copied
    assert not torch.equal(ema[0].weight, model[0].weight)


def test_training_saves_the_average_and_test_py_translates_with_it(tiny_train_args):
    argv = tiny_train_args("ema", ema_decay=0.5)
    assert train.main(argv) == 0
    folder = run_dir(argv)
    average, last = (safe_load(folder / f"latest_net_{name}.pth") for name in ("G_ema", "G"))
    assert any(not torch.equal(average[k], last[k]) for k in average if average[k].is_floating_point())
    translator = load_translator(folder, device="cpu")
    for key, value in translator.model.netG.state_dict().items():
        assert torch.equal(value, average[key]), key


def test_without_the_average_test_py_translates_with_G(tiny_train_args):
    argv = tiny_train_args("no_ema", ema_decay=0)
    assert train.main(argv) == 0
    folder = run_dir(argv)
    assert not (folder / "latest_net_G_ema.pth").exists()
    last = safe_load(folder / "latest_net_G.pth")
    translator = load_translator(folder, device="cpu")
    for key, value in translator.model.netG.state_dict().items():
        assert torch.equal(value, last[key]), key


def test_a_run_without_the_average_resumes_with_it_started_from_G(tiny_train_args):
    argv = tiny_train_args("resume_old", ema_decay=0, n_epochs=1, n_epochs_decay=0)
    assert train.main(argv) == 0
    argv = tiny_train_args("resume_old", ema_decay=0.9, n_epochs=2, n_epochs_decay=0)
    assert train.main(argv + ["--continue_train"]) == 0
    assert (run_dir(argv) / "latest_net_G_ema.pth").is_file()
