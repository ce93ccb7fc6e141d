"""--amp: bfloat16 autocast trains and translates on CPU (the opt-in speed path), close to float32."""
import json
import math

import pytest
import torch

import test as test_script
import train
from models import create_model
from models.schedule import StageSchedule
from options.train_options import TrainOptions


def test_amp_trains_through_both_stages_and_translates(tiny_train_args, toy_dataroot, tmp_path):
    argv = tiny_train_args("amp", amp=True, n_epochs=1, coop_epochs=0.5)
    assert train.main(argv) == 0
    lines = (tmp_path / "checkpoints" / "amp" / "loss_log.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert {e["stage"] for e in entries} == {"coop", "adversarial"}
    assert all(math.isfinite(v) for e in entries for v in e["losses"].values())
    assert test_script.main(["--dataroot", str(toy_dataroot), "--checkpoints_dir", str(tmp_path / "checkpoints"),
                             "--name", "amp", "--results_dir", str(tmp_path / "results"), "--amp",
                             "--num_threads", "0", "--gpu_ids", "-1"]) == 0
    assert len(list((tmp_path / "results" / "amp" / "test_latest" / "images" / "fake_B").glob("*.png"))) == 5


def test_amp_translation_is_close_to_float32(toy_dataroot):
    opt = TrainOptions().parse(["--dataroot", str(toy_dataroot), "--gpu_ids", "-1", "--ngf", "8",
                                "--netG", "resnet_4blocks"])
    model = create_model(opt, torch.device("cpu"))
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    exact = model.translate(images)
    model.opt.amp = True
    fast = model.translate(images)
    assert fast.dtype == torch.float32 and not torch.equal(fast, exact)  # autocast really ran
    assert (fast - exact).abs().max() < 0.05  # bfloat16 keeps ~3 significant digits


def one_training_step(dataroot, *, amp: bool, coop_iters: int = 0) -> tuple[dict, dict]:
    """The losses and every network's gradients after one optimize() from the same weights, batch and
    random state, in float32 or with --amp."""
    opt = TrainOptions().parse(["--dataroot", str(dataroot), "--gpu_ids", "-1", "--ngf", "8", "--ndf", "8",
                                "--netG", "resnet_4blocks", "--num_patches", "16"])
    opt.amp = amp
    torch.manual_seed(0)
    model = create_model(opt, torch.device("cpu"))
    model.schedule = StageSchedule(coop_iters=coop_iters)
    generator = torch.Generator().manual_seed(2)
    batch = {"A": torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1,
             "B": torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1, "A_paths": ["a.png"]}
    model.data_dependent_initialize(batch)
    torch.manual_seed(1)
    model.optimize(0)
    gradients = {name: torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])
                 for name, net in model.nets.items() if name != "G_ema"}  # the moving average has no gradients
    return {k: float(v) for k, v in model.losses.items()}, gradients


def test_amp_training_step_is_close_to_float32(toy_dataroot):
    """--amp is not the same maths: one CUT step's losses agree within 1 %, and each network's
    gradient points the same way within cosine similarity 0.9 (measured: G 0.965, F 0.9994, D 0.9999)."""
    exact_losses, exact_grads = one_training_step(toy_dataroot, amp=False)
    fast_losses, fast_grads = one_training_step(toy_dataroot, amp=True)
    assert fast_losses.keys() == exact_losses.keys() and fast_losses != exact_losses  # autocast really ran
    for name, value in exact_losses.items():
        assert abs(fast_losses[name] - value) <= 0.01 * max(abs(value), 1e-2), name
    for name, exact in exact_grads.items():
        assert torch.nn.functional.cosine_similarity(fast_grads[name], exact, dim=0) > 0.9, name


def test_amp_langevin_revision_moves_the_image_as_float32_does(toy_dataroot):
    exact_losses, _ = one_training_step(toy_dataroot, amp=False, coop_iters=10)
    fast_losses, _ = one_training_step(toy_dataroot, amp=True, coop_iters=10)
    assert exact_losses["langevin_change"] > 0
    assert fast_losses["langevin_change"] == pytest.approx(exact_losses["langevin_change"], rel=0.1)
