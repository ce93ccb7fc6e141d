"""bench/demo_sweep.py: the demo's flags come from the Makefile, a config's flags are added after them
(so they win), each run is trained, translated and scored, and the report has every run and the means."""
from __future__ import annotations

import argparse
import json
import shlex

import pytest

from bench import demo_sweep

# Shrinks the demo to seconds; the sweep must pass these after the Makefile's flags for them to win.
TINY = ("--n_epochs 2 --n_epochs_decay 0 --max_dataset_size 3 --load_size 32 --crop_size 32 --ngf 8 --ndf 8 --netF_nc 16 --num_patches 16 "
        "--coop_langevin_steps 2 --coop_epochs 1")


def test_config_parsing():
    assert demo_sweep.parse_config("nce2=--lambda_NCE 2") == ("nce2", ["--lambda_NCE", "2"])
    assert demo_sweep.parse_config("demo=") == ("demo", [])
    with pytest.raises(argparse.ArgumentTypeError, match="NAME=FLAGS"):
        demo_sweep.parse_config("--lambda_NCE 2")


def test_demo_flags_are_the_makefiles(tmp_path):
    flags = demo_sweep.demo_flags(dataroot=tmp_path / "toy", name="x_s3", checkpoints=tmp_path / "ck", seed=3)
    text = shlex.join(flags)
    assert f"--dataroot {tmp_path / 'toy'} --name x_s3 --checkpoints_dir {tmp_path / 'ck'} --seed 3" in text
    assert "--netG resnet_6blocks" in text and "--coop_epochs" not in text  # CoopInit at its defaults


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tiny_sweep_trains_tests_scores_and_reports(tmp_path, toy_dataroot, capsys):
    out = tmp_path / "sweep"
    argv = ["--config", f"tiny={TINY}", f"tinyCUT={TINY} --coop_epochs 0", "--seeds", "0",
            "--dataroot", str(toy_dataroot), "--threads", "1", "--out", str(out)]
    assert demo_sweep.main(argv) == 0
    rows = [json.loads(line) for line in (out / "demo_sweep.jsonl").read_text().splitlines()]
    assert [(r["config"], r["seed"]) for r in rows] == [("tiny", 0), ("tinyCUT", 0)]
    assert all(0 <= r["silhouette_iou"] <= 1 and r["n_images"] == 5 for r in rows)
    switched = {r["config"]: "=== CoopInit" in (out / "checkpoints" / f"{r['config']}_s0" / "loss_log.txt").read_text()
                for r in rows}
    assert switched == {"tiny": True, "tinyCUT": False}  # the config's --coop_epochs won over the default
    report = (out / "demo_sweep.md").read_text()
    assert "| tiny | `" in report and "| tinyCUT | `" in report and "- tiny seed 0: stripe_strength" in report
    assert report.strip() in capsys.readouterr().out
    assert demo_sweep.main(argv) == 0  # finished runs are read back, not redone
    assert (out / "demo_sweep.jsonl").read_text().splitlines() == [json.dumps(r) for r in rows]


def test_a_failing_run_names_its_config_and_log(tmp_path, toy_dataroot):
    out = tmp_path / "sweep"
    with pytest.raises(SystemExit) as error:
        demo_sweep.main(["--config", "typo=--lamda_NCE 2", "--seeds", "0", "--dataroot", str(toy_dataroot),
                         "--threads", "1", "--out", str(out)])
    message = str(error.value)
    assert "train.py failed for config 'typo' seed 0" in message
    assert str(out / "runs" / "typo_s0" / "log.txt") in message and "lamda_NCE" in message
