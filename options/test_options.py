"""Test options: translate one domain's test split into an image folder and an HTML page."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from options.base_options import BaseOptions

# Options that fix the generator's shape or the images it was trained on. test.py takes their
# defaults from the training run (train_opt.json), so users need not repeat them as CUT required.
INHERITED_FROM_TRAINING = ("model", "CUT_mode", "netG", "ngf", "normG", "input_nc", "output_nc",
                           "no_dropout", "no_antialias", "no_antialias_up", "init_type", "direction",
                           "crop_size")


def training_options(checkpoints_dir: str, name: str) -> dict:
    """The options a run was trained with, or {} when the run has no train_opt.json."""
    path = Path(checkpoints_dir) / name / "train_opt.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def differing_options_hint(opt: argparse.Namespace) -> str:
    """"; options that differ from training: --ngf 16 (trained with 64)", or "" (for load errors)."""
    trained = training_options(opt.checkpoints_dir, opt.name)
    differing = [f"--{k} {getattr(opt, k)} (trained with {trained[k]})" for k in INHERITED_FROM_TRAINING
                 if k in trained and k != "crop_size" and str(getattr(opt, k, None)) != str(trained[k])]
    return f"; options that differ from training: {', '.join(differing)}" if differing else ""


class TestOptions(BaseOptions):
    """Translate DATAROOT/testA with a trained generator; write images and an HTML page."""

    is_train = False

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = super().initialize(parser)
        g = parser.add_argument_group("testing")
        g.add_argument("--results_dir", default="./results", help="results go to RESULTS_DIR/NAME")
        g.add_argument("--phase", default="test", help="data split to translate (DATAROOT/PHASEA)")
        g.add_argument("--num_test", type=int, default=float("inf"),
                       help="translate at most this many images (default: all)")
        g.add_argument("--eval", action="store_true",
                       help="kept for CUT compatibility; the generator always runs in eval mode")
        # As in CUT's test.py: in order, no flip, one image per batch (fastest per image on CPU; a
        # larger --batch_size pays off on a GPU), images resized to the crop size.
        parser.set_defaults(serial_batches=True, no_flip=True, dataset_mode="single", num_threads=2,
                            batch_size=1, load_size=256)
        return parser

    def run_defaults(self, argv: list[str] | None) -> dict:
        probe = argparse.ArgumentParser(add_help=False)
        probe.add_argument("--name", default="experiment_name")
        probe.add_argument("--checkpoints_dir", default="./checkpoints")
        known, _ = probe.parse_known_args(argv)
        trained = training_options(known.checkpoints_dir, known.name)
        defaults = {k: trained[k] for k in INHERITED_FROM_TRAINING if k in trained}
        if "crop_size" in defaults:
            defaults["load_size"] = defaults["crop_size"]
        return defaults
