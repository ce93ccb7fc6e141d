"""Test options: translate one domain's test split into an image folder and an HTML page."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from data.image_folder import DatasetError
from data.single_dataset import split_name
from options.base_options import BaseOptions, run_name
from options.common import available_cpus

# Options that fix the generator's shape or the images it was trained on. test.py takes their
# defaults from the training run (train_opt.json, or the reference CUT's train_opt.txt), so users
# need not repeat them as CUT required.
GENERATOR_SHAPE = ("netG", "ngf", "normG", "input_nc", "output_nc", "no_dropout", "no_antialias", "no_antialias_up")
INHERITED_FROM_TRAINING = ("model", "CUT_mode", *GENERATOR_SHAPE, "init_type", "direction", "crop_size")
# train.py --pretrained_name takes these defaults from the run it starts from: what fixes the
# shapes of G's, D's and F's weights.
PRETRAINED_SHAPE = (*GENERATOR_SHAPE, "netD", "ndf", "n_layers_D", "normD", "netF", "netF_nc", "nce_layers")

_OPTION_LINE = re.compile(r"^\s*(\w+): (.*?)\s*(?:\t\[default: .*\])?$")


def _option_value(text: str) -> object:
    """A value as the reference's train_opt.txt prints it ("True", "8", "0.02", "None") -> Python."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def training_options(checkpoints_dir: str, name: str, *, reference_format: bool = True) -> dict:
    """The options a run was trained with: its train_opt.json, else (if `reference_format`) its
    train_opt.txt (the reference CUT's format, "   key: value   [default: ...]" per line, which this
    project writes too), else {}. ValueError names a train_opt.json that is not a JSON object."""
    run_dir = Path(checkpoints_dir) / name
    record_path = run_dir / "train_opt.json"
    if record_path.is_file():
        try:
            record = json.loads(record_path.read_text())
            problem = None if isinstance(record, dict) else f"a JSON {type(record).__name__}"
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            problem = str(err)
        if problem is not None:  # damaged: torn by a full disk, or edited by hand
            raise ValueError(f"{record_path} is not a JSON object of options ({problem}): restore it from "
                             "train_opt.txt beside it (the same options as text), or remove it and pass the run's "
                             "options (--dataroot, --netG, --ngf...) on the command line")
        return record
    if reference_format and (run_dir / "train_opt.txt").is_file():
        found = (_OPTION_LINE.match(line) for line in (run_dir / "train_opt.txt").read_text().splitlines())
        return {match[1]: _option_value(match[2]) for match in found if match}
    return {}


def differing_options_hint(opt: argparse.Namespace, *, name: str | None = None,
                           keys: tuple[str, ...] = INHERITED_FROM_TRAINING) -> str:
    """"; options that differ from training: --ngf 16 (trained with 64)", or "" (for load errors).

    Compares `keys` of `opt` with the options of run `name` (default: opt.name)."""
    trained = training_options(opt.checkpoints_dir, name or opt.name)
    differing = [f"--{k} {getattr(opt, k)} (trained with {trained[k]})" for k in keys
                 if k in trained and k != "crop_size" and str(getattr(opt, k, None)) != str(trained[k])]
    return f"; options that differ from training: {', '.join(differing)}" if differing else ""


def set_help(parser: argparse.ArgumentParser, flag: str, text: str) -> None:
    """Reword an inherited flag's help for this script (argparse has no public way)."""
    parser._option_string_actions[flag].help = text


def require_dataroot(opt: argparse.Namespace) -> None:
    """DatasetError, before any work, when --dataroot was neither given nor recorded by the run, or
    when the run's recorded one is gone: the message names --dataroot, not the dataset code's terms."""
    run_dir = Path(opt.checkpoints_dir) / opt.name
    forms = f"a folder of images, or a dataset folder with {split_name(opt)}"
    if opt.dataroot is None:
        records = [name for name in ("train_opt.json", "train_opt.txt") if (run_dir / name).is_file()]
        why = (f"its {' and '.join(records)} name{'s' if len(records) == 1 else ''} no dataroot" if records
               else "no train_opt.json or train_opt.txt")
        raise DatasetError(f"--dataroot not given, and the run {run_dir} records none ({why}): pass --dataroot "
                           f"({forms})" if run_dir.is_dir() else
                           f"--dataroot not given, and there is no run folder {run_dir} to take it from: pass "
                           f"--dataroot ({forms}), or check --name and --checkpoints_dir")
    recorded = training_options(opt.checkpoints_dir, opt.name).get("dataroot")
    if str(opt.dataroot) == str(recorded) and not Path(opt.dataroot).exists():
        raise DatasetError(f"--dataroot {opt.dataroot}, the one the run {run_dir} was trained on, does not exist "
                           f"here: pass --dataroot ({forms})")


class TestOptions(BaseOptions):
    """Translate DATAROOT/testA with a trained generator; write images and an HTML page. The options that
    fix the generator (--netG, --ngf, --normG, --no_antialias...), --model, --direction, --crop_size (and
    --load_size, equal to it) and --dataroot default to the run's, from CHECKPOINTS_DIR/NAME/train_opt.json
    (or the reference CUT's train_opt.txt), so they need not be repeated; the defaults listed below are
    for a run that records none (`--name NAME --help` lists that run's)."""

    is_train = False

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = super().initialize(parser)
        g = parser.add_argument_group("testing")
        g.add_argument("--results_dir", default="./results", help="results go to RESULTS_DIR/NAME")
        g.add_argument("--phase", default="test", help="data split to translate (DATAROOT/PHASEA)")
        g.add_argument("--num_test", type=int, default=float("inf"),
                       help="translate at most this many images (default: %(default)s, i.e. all)")
        g.add_argument("--eval", action="store_true",
                       help="kept for CUT compatibility; the generator always runs in eval mode")
        g.add_argument("--aspect_ratio", type=float, default=1.0,
                       help="CycleGAN's: stretch the saved images to height / width = ASPECT_RATIO x the "
                            "translation's (>1 taller, <1 wider; 1 = as translated)")
        g = parser.add_argument_group("full resolution, tiles, video (docs/using_a_trained_model.md)")
        g.add_argument("--tile", type=int, default=None,
                       help="translate images larger than this many pixels in overlapping tiles, with image-wide "
                            "instance-norm statistics (bounded memory, several times slower); unset: tile only an "
                            "image that would not fit in memory, with the largest tiles that fit")
        g.add_argument("--tile_overlap", type=int, default=None,
                       help="overlap of neighbouring tiles in pixels, a multiple of 4 under half of --tile "
                            "(unset: half the generator's receptive field, 92 px for resnet_9blocks)")
        g.add_argument("--video", default=None,
                       help="translate this video file (frame by frame, audio copied) instead of DATAROOT; needs --out")
        g.add_argument("--out", default=None, help="the translated video to write (--video); its extension picks the "
                                                   "container, e.g. .mp4 or .mkv")
        g.add_argument("--video_codec", default=None,
                       help="video encoder for --out, e.g. libx264, mpeg4, libvpx-vp9, ffv1 (unset: the first of "
                            "these that FFmpeg has and --out's container holds)")
        # As in CUT's test.py: in order, no flip, one image per batch (fastest per image on CPU; a
        # larger --batch_size pays off on a GPU), images resized to the crop size.
        set_help(parser, "--dataroot", "folder of images to translate, or a dataset folder with PHASEA (e.g. testA) "
                 "(default: the --dataroot the run NAME was trained on, from its train_opt.json, required when it "
                 "records none; here: %(default)s)")
        parser.set_defaults(serial_batches=True, no_flip=True, dataset_mode="single",
                            num_threads=min(2, available_cpus()), batch_size=1, load_size=256)
        return parser

    def validate(self, opt: argparse.Namespace) -> None:
        super().validate(opt)
        if opt.aspect_ratio <= 0:
            self.parser.error(f"--aspect_ratio {opt.aspect_ratio} must be positive (height / width of the saved "
                              "images, relative to the translation's)")
        if opt.num_test < 1:
            self.parser.error(f"--num_test {opt.num_test} must be at least 1 (leave it out to use every image)")
        if (opt.video is None) != (opt.out is None):
            self.parser.error("--video IN and --out OUT go together: the video to translate and the file to write")

    def run_defaults(self, known: argparse.Namespace) -> dict:
        trained = training_options(known.checkpoints_dir, run_name(known))
        defaults = {k: trained[k] for k in INHERITED_FROM_TRAINING if k in trained}
        if "crop_size" in defaults:
            defaults["load_size"] = defaults["crop_size"]
        # The run's own data, as users of CUT (where --dataroot is required) expect; None: require_dataroot
        defaults["dataroot"] = None if trained.get("dataroot") is None else str(trained["dataroot"])
        return defaults
