"""End to end: tiny training runs through train.main, then test.py; files, resume, stages, learning."""
from __future__ import annotations

import importlib.util
import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train
from conftest import run_dir
from models import coop
from models.cut_model import CUTModel
from util.checkpoint import safe_load

ROOT = Path(__file__).resolve().parents[1]
# test.py by path: `import test` could find the standard library's test package.
_spec = importlib.util.spec_from_file_location("coopinit_test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)

COOP_LOSSES = {"EBM", "teach", "f_data", "f_revised", "NCE", "NCE_Y"}
ADVERSARIAL_LOSSES = {"G_GAN", "D_real", "D_fake", "G", "NCE", "NCE_Y"}
SWITCH = "starts the adversarial stage"
NEVER_ADVERSARIAL = "warning: the adversarial stage would start at iteration"


def read_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "loss_log.jsonl").read_text().splitlines()]


def interrupt_after(monkeypatch, iterations: int) -> None:
    """Deliver SIGINT right after the given number of training iterations (Ctrl-C, deterministically)."""
    optimize = CUTModel.optimize

    def optimize_then_interrupt(self, iteration):
        stage = optimize(self, iteration)
        if iteration + 1 == iterations:
            signal.raise_signal(signal.SIGINT)
        return stage
    monkeypatch.setattr(CUTModel, "optimize", optimize_then_interrupt)


def test_train_then_test_writes_every_output(tiny_train_args, toy_dataroot, tmp_path):
    argv = tiny_train_args("run", n_epochs=1, n_epochs_decay=1, save_epoch_freq=1, coop_epochs=0.5)
    assert train.main(argv) == 0
    folder = run_dir(argv)
    expected = {"train_opt.txt", "train_opt.json", "loss_log.txt", "loss_log.jsonl", "latest_state.pth"}
    expected |= {f"{tag}_net_{net}.pth" for tag in ("latest", 1, 2) for net in "GDF"}
    assert expected <= {p.name for p in folder.iterdir()}
    assert not list(folder.glob(".*.tmp"))  # atomic saves leave no temporary files
    assert "netG: resnet_4blocks" in " ".join((folder / "train_opt.txt").read_text().split())
    def refuse(constant: str):
        raise AssertionError(f"train_opt.json holds {constant}, which is not JSON")
    json.loads((folder / "train_opt.json").read_text(), parse_constant=refuse)

    entries = read_log(folder)  # 4 images, batch 1, 2 epochs, logged every iteration
    assert [(e["epoch"], e["iter"]) for e in entries] == [(1, 1), (1, 2), (1, 3), (1, 4),
                                                          (2, 5), (2, 6), (2, 7), (2, 8)]
    assert [e["stage"] for e in entries] == ["coop"] * 2 + ["adversarial"] * 6
    for entry in entries:
        assert {"epoch", "iter", "stage", "losses", "sec_per_iter"} <= entry.keys() and entry["sec_per_iter"] > 0
        assert all(math.isfinite(v) for v in entry["losses"].values())
    assert COOP_LOSSES <= entries[0]["losses"].keys() and "G_GAN" not in entries[0]["losses"]
    assert ADVERSARIAL_LOSSES <= entries[-1]["losses"].keys() and "EBM" not in entries[-1]["losses"]
    assert "[adversarial] G_GAN:" in (folder / "loss_log.txt").read_text()

    state = safe_load(folder / "latest_state.pth")
    assert (state["epoch"], state["epoch_iter"], state["iteration"]) == (3, 0, 8)  # next: epoch 3
    latest_G = safe_load(folder / "latest_net_G.pth")
    assert all(torch.equal(latest_G[k], v) for k, v in safe_load(folder / "2_net_G.pth").items())

    # test.py needs no architecture flags: it reads them from train_opt.json.
    results = tmp_path / "results"
    out = results / "run" / "test_latest"
    # leftovers of an earlier test.py run with more images, and its score
    (out / "images" / "fake_B").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(out / "images" / "fake_B" / "9999.png")
    (out / "score.json").write_text('{"summary": ["stale"]}')
    assert test_script.main(["--dataroot", str(toy_dataroot), "--checkpoints_dir", str(folder.parent),
                             "--name", "run", "--results_dir", str(results), "--num_threads", "0",
                             "--gpu_ids", "-1"]) == 0
    stems = sorted(p.stem for p in (toy_dataroot / "testA").glob("*.png"))
    assert len(stems) == 5
    for kind in ("real_A", "fake_B", "real_B"):
        assert sorted(p.stem for p in (out / "images" / kind).glob("*.png")) == stems
    assert not (out / "score.json").exists()
    # real_B: the target domain's image of the same index, for comparison
    references = sorted((toy_dataroot / "testB").glob("*.png"))
    for stem, reference in zip(stems, references):
        assert np.array_equal(np.asarray(Image.open(out / "images" / "real_B" / f"{stem}.png")),
                              np.asarray(Image.open(reference).convert("RGB")))
    for stem in stems:
        source = np.asarray(Image.open(toy_dataroot / "testA" / f"{stem}.png").convert("RGB"))
        real = np.asarray(Image.open(out / "images" / "real_A" / f"{stem}.png"))
        fake = np.asarray(Image.open(out / "images" / "fake_B" / f"{stem}.png"))
        assert np.array_equal(real, source)  # trained size = image size: shown unchanged
        assert fake.shape == (32, 32, 3) and not np.array_equal(fake, real)
    page = (out / "index.html").read_text()
    assert all(f"images/{kind}/{stem}.png" in page for stem in stems for kind in ("real_A", "fake_B", "real_B"))
    assert "9999" not in page and "stale" not in page


def test_resumed_run_matches_uninterrupted_run(tiny_train_args, monkeypatch, capsys):
    """Interrupt (Ctrl-C) mid-epoch and at an epoch's end, resume; weights, optimizer moments and
    every logged loss must equal an uninterrupted run's. The run crosses the CoopInit switch
    (iteration 3 -> 4), an epoch boundary and the learning-rate decay, with FastCUT's random flips."""
    flags = dict(n_epochs=2, n_epochs_decay=1, batch_size=2, coop_epochs=1.5, flip_equivariance=True)
    full = tiny_train_args("full", **flags)
    assert train.main(full) == 0
    reference = read_log(run_dir(full))
    assert len(reference) == 6 and [e["stage"] for e in reference] == ["coop"] * 3 + ["adversarial"] * 3

    ctrl_c = signal.getsignal(signal.SIGINT)
    for stop_after, (epoch, epoch_iter) in [(3, (2, 1)), (4, (2, 2))]:
        argv = tiny_train_args(f"stopped_after_{stop_after}", **flags)
        with monkeypatch.context() as patch:
            interrupt_after(patch, stop_after)
            assert train.main(argv) == 128 + signal.SIGINT
        assert signal.getsignal(signal.SIGINT) is ctrl_c  # train.main gave Ctrl-C back
        folder = run_dir(argv)
        state = safe_load(folder / "latest_state.pth")
        assert (state["epoch"], state["epoch_iter"], state["iteration"]) == (epoch, epoch_iter, stop_after)

        capsys.readouterr()
        assert train.main(argv + ["--continue_train"]) == 0
        assert f"epoch {epoch}, iteration {stop_after}" in capsys.readouterr().out

        resumed = read_log(folder)
        assert [e["iter"] for e in resumed] == [1, 2, 3, 4, 5, 6]
        for mine, theirs in zip(resumed, reference):
            assert (mine["epoch"], mine["epoch_iter"], mine["stage"]) == \
                (theirs["epoch"], theirs["epoch_iter"], theirs["stage"])
            assert mine["losses"] == pytest.approx(theirs["losses"], rel=1e-5, abs=1e-6), mine["iter"]
        assert (folder / "loss_log.txt").read_text().count(SWITCH) == 1

        for net in "GDF":
            expected = safe_load(run_dir(full) / f"latest_net_{net}.pth")
            for key, value in safe_load(folder / f"latest_net_{net}.pth").items():
                torch.testing.assert_close(value, expected[key], msg=f"net {net}: {key}")
        expected_optimizers = safe_load(run_dir(full) / "latest_state.pth")["model"]["optimizers"]
        for name, optimizer in safe_load(folder / "latest_state.pth")["model"]["optimizers"].items():
            for param_id, moments in optimizer["state"].items():
                for key, value in moments.items():
                    torch.testing.assert_close(value, expected_optimizers[name]["state"][param_id][key])


def test_continue_from_an_epochs_weights_goes_on_with_the_next_epoch(tiny_train_args, capsys):
    """--continue_train --epoch N (weights only, N_net_*.pth): epoch N + 1, at the iteration where the
    schedule is then (no second cooperative stage); a finished run says there is nothing to train."""
    argv = tiny_train_args("epochs", n_epochs=3, save_epoch_freq=1, coop_epochs=1)  # 4 iterations per epoch
    assert train.main(argv) == 0
    folder = run_dir(argv)
    trained_3 = safe_load(folder / "3_net_G.pth")
    capsys.readouterr()
    assert train.main(argv + ["--continue_train", "--epoch", "2"]) == 0
    out = capsys.readouterr().out
    assert "continuing at epoch 3 (iteration 9, adversarial stage) with fresh optimizer state" in out
    assert SWITCH not in out  # the cooperative stage ended in epoch 1: it does not run again
    assert [(e["iter"], e["epoch"], e["stage"]) for e in read_log(folder)][-4:] == \
        [(i, 3, "adversarial") for i in range(9, 13)]
    assert any(not torch.equal(value, trained_3[key]) for key, value in safe_load(folder / "3_net_G.pth").items())
    # from the end of the cooperative stage, the switch comes where the first run had it
    assert train.main(argv + ["--continue_train", "--epoch", "1"]) == 0
    out = capsys.readouterr().out
    assert "continuing at epoch 2 (iteration 5, adversarial stage)" in out
    assert f"iteration 5 (epoch 2) {SWITCH}" in out
    # an --epoch_count given wins, even 1 (the cooperative stage then runs again, from these weights)
    assert train.main(argv + ["--continue_train", "--epoch", "2", "--epoch_count", "1"]) == 0
    assert "continuing at epoch 1 (iteration 1, coop stage)" in capsys.readouterr().out
    assert train.main(argv + ["--continue_train"]) == 0
    assert "nothing to train: this run's schedule ends with epoch 3, and it resumes at epoch 4" in \
        capsys.readouterr().out


def test_a_run_shorter_than_update_html_freq_still_gets_its_training_page(tiny_train_args):
    argv = tiny_train_args("short_page", update_html_freq=1000)  # 4 iterations
    assert train.main(argv) == 0
    page = (run_dir(argv) / "web" / "index.html").read_text()
    assert "epoch 1, iteration 4" in page and "images/epoch001_iter00000004_fake_B.png" in page


def test_continue_train_with_a_mistyped_name_names_the_checkpoint(tmp_path, capsys):
    """Checked before the data is read: the default --dataroot does not exist either."""
    argv = ["--name", "no_such_run", "--checkpoints_dir", str(tmp_path), "--continue_train", "--gpu_ids", "-1",
            "--display_id", "0"]
    assert train.main(argv) == 2
    assert (f"error: --continue_train: no checkpoint 'latest' in {tmp_path / 'no_such_run'} (no latest_state.pth, "
            "no latest_net_G.pth) -- check --name" in capsys.readouterr().err)


def test_fractional_coop_epochs_switch_once_at_the_rounded_iteration(tiny_train_args):
    argv = tiny_train_args("switch", n_epochs=2, coop_epochs=0.7)  # 4 iterations per epoch: round(2.8) = 3
    assert train.main(argv) == 0
    folder = run_dir(argv)
    assert [e["stage"] for e in read_log(folder)] == ["coop"] * 3 + ["adversarial"] * 5
    text = (folder / "loss_log.txt").read_text()
    assert "3 cooperative iterations" in text
    assert text.count(SWITCH) == 1 and f"iteration 4 (epoch 1) {SWITCH}" in text
    assert NEVER_ADVERSARIAL not in text


@pytest.mark.parametrize("coop_epochs", ["5", "150%"])
def test_coop_stage_longer_than_the_run_is_warned_about_once_at_the_start(tiny_train_args, capsys, coop_epochs):
    argv = tiny_train_args("all_coop", coop_epochs=coop_epochs)  # 1 epoch of 4 iterations
    assert train.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count(NEVER_ADVERSARIAL) == 1
    assert out.index(NEVER_ADVERSARIAL) < out.index("training finished")
    assert "after the run's last iteration (4)" in out and "lower --coop_epochs (e.g. 17%" in out
    assert NEVER_ADVERSARIAL in (run_dir(argv) / "loss_log.txt").read_text()
    assert {e["stage"] for e in read_log(run_dir(argv))} == {"coop"}


@pytest.mark.parametrize("reset, cleared", [(None, {"D"}), ("none", set()), (True, {"D"}), ("all", {"G", "F", "D"})])
def test_reset_optimizers_at_the_switch_clears_the_chosen_adam_moments(tiny_train_args, monkeypatch, reset, cleared):
    seen = []
    original = CUTModel.on_stage_switch

    def spy(model, iteration, items):
        assert all(opt.state for opt in model.optimizers.values())  # stage 1 built moments for all three
        original(model, iteration, items)
        seen.append({name for name, opt in model.optimizers.items() if not opt.state})
    monkeypatch.setattr(CUTModel, "on_stage_switch", spy)
    argv = tiny_train_args("reset", coop_epochs=0.5, coop_reset_optimizers=reset)
    assert train.main(argv) == 0
    assert seen == [cleared]


def test_coop_epochs_0_is_plain_cut(tiny_train_args, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("cooperative code called with --coop_epochs 0")
    for name in ("langevin_revise", "mle_loss", "teach_loss", "patch_score"):
        monkeypatch.setattr(coop, name, forbidden)
    argv = tiny_train_args("cut", coop_epochs=0)
    assert train.main(argv) == 0
    entries = read_log(run_dir(argv))
    assert len(entries) == 4 and all(e["stage"] == "adversarial" for e in entries)
    assert all(e["losses"].keys().isdisjoint({"EBM", "teach"}) for e in entries)
    assert SWITCH not in (run_dir(argv) / "loss_log.txt").read_text()


def test_training_lowers_the_nce_loss(tiny_train_args):
    """About 100 FastCUT iterations on 8 toy images: G learns to keep the content PatchNCE asks for."""
    argv = tiny_train_args("learn", CUT_mode="FastCUT", coop_epochs=0, n_epochs=12, max_dataset_size=8)
    assert train.main(argv) == 0
    entries = read_log(run_dir(argv))
    assert "NCE_Y" not in entries[0]["losses"]  # FastCUT's defaults reach train.main(argv)
    nce = [e["losses"]["NCE"] for e in entries]
    assert len(nce) == 96
    first, last = np.mean(nce[:20]), np.mean(nce[-20:])
    assert last < 0.85 * first, (first, last)


def write_noise(folder: Path, sizes: list[tuple[int, int]]) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(sizes))
    for i, (width, height) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.mark.parametrize("mode", ["CUT", "FastCUT"])  # identity pass or not, flips or not
def test_preprocess_none_trains_on_a_and_b_images_of_different_sizes(tiny_train_args, tmp_path, mode, capsys):
    root = tmp_path / "sizes"
    write_noise(root / "trainA", [(44, 44), (40, 36)])
    write_noise(root / "trainB", [(32, 32), (28, 36)])
    argv = tiny_train_args(dataroot=root, preprocess="none", CUT_mode=mode, coop_epochs=0.5, n_epochs=2)
    assert train.main(argv) == 0, capsys.readouterr().err
    assert {e["stage"] for e in read_log(run_dir(argv))} == {"coop", "adversarial"}

    assert train.main(argv + ["--name", "batched", "--batch_size", "2"]) == 2  # A's sizes differ within a batch
    err = capsys.readouterr().err
    assert "--batch_size 2 stacks images into one tensor, but --preprocess none keeps each image's size" in err
