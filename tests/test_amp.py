"""--amp: bfloat16 autocast trains and translates on CPU (the opt-in speed path), close to float32."""
import json
import math

import torch

import test as test_script
import train
from models import create_model
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
