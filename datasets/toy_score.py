"""Translation score of a test.py result on the toy horse -> zebra set (the end of `make demo`).

    python -m datasets.toy_score --dataroot datasets/toy --results results/toy_demo/test_latest

Prints, with a one-line meaning each: stripe strength inside the animal relative to real
zebras, how well the silhouette is kept and how much the background changed (all from
:func:`datasets.toy_metrics.toy_translation_metrics`, which uses the test masks and background
plates), and FID/KID of the translations against testB (evaluate.py's offline Inception
features). Writes RESULTS/score.json and adds the score to RESULTS/index.html.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import evaluate
from datasets.make_toy_dataset import DEFAULT_OUT, MASKED_SPLIT
from datasets.toy_metrics import KEPT_IOU, toy_translation_metrics
from metrics.inception import WeightsError
from util.results_page import SCORE_JSON, write_results_page


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags."""
    parser = argparse.ArgumentParser(
        prog="python -m datasets.toy_score",
        description="Score a translation of the toy set's testA (written by test.py): stripes, "
                    "silhouette, background, FID/KID. Writes RESULTS/score.json and shows the score "
                    "at the top of RESULTS/index.html.")
    parser.add_argument("--dataroot", type=Path, default=DEFAULT_OUT,
                        help="the toy dataset (made by datasets/make_toy_dataset.py), with its "
                             f"{MASKED_SPLIT}A/B images, masks and backgrounds (default {DEFAULT_OUT})")
    parser.add_argument("--results", type=Path, required=True,
                        help="test.py's output folder, RESULTS_DIR/NAME/PHASE_EPOCH (holds images/fake_B "
                             "and index.html), e.g. results/toy_demo/test_latest")
    parser.add_argument("--gpu_ids", default=None,
                        help="device for the FID Inception network, as in evaluate.py: -1 for CPU "
                             "(default: GPU 0 if CUDA is available, else CPU)")
    return parser


def summary_lines(score: dict) -> list[str]:
    """The score as plain-language lines, one per number (printed and shown on the page)."""
    toy = score["toy"]
    n = toy["n_images"]
    kept = round(toy["silhouette_kept"] * n)
    horses = toy["stripe_contrast_real_A"] / toy["stripe_contrast_real_B"]
    lines = [
        f"stripe strength {toy['stripe_strength']:.2f}: stripes inside the animal relative to real "
        f"zebras (1 = as striped as the zebras in testB; the input horses score {horses:.2f})",
        f"silhouette IoU {toy['silhouette_iou']:.2f} (mean; {kept} of {n} images kept, IoU >= "
        f"{KEPT_IOU}; worst {toy['silhouette_iou_min']:.2f}): how well the output keeps the "
        "animal's outline (1 = exactly, 0 = no animal where it was)",
        f"background change {toy['background_error']:.3f}: mean colour change outside the animal "
        "(0 = unchanged, 1 = black turned white)",
    ]
    if score.get("fid") is None:
        lines.append(f"FID/KID not computed: {score['fid_error']}")
    else:
        # with fewer than 1000 images every KID subset is the whole set: the spread is rounding noise
        spread = f" ± {score['kid_std']:.4f}" if round(score["kid_std"], 4) > 0 else ""
        lines.append(
            f"FID {score['fid']:.1f}, KID {score['kid_mean']:.4f}{spread}: distance of the "
            f"{score['n_fake']} translations to the {score['n_real']} real zebras (testB) in Inception "
            "features, lower is better; from so few images, compare runs with each other, not with "
            "published FIDs")
    return lines


def score(args: argparse.Namespace) -> dict:
    """Compute the score and write score.json and the page; returns what score.json holds."""
    fake_dir = args.results / "images" / "fake_B"
    if not fake_dir.is_dir():
        raise FileNotFoundError(f"{fake_dir} not found: --results must be a folder written by test.py "
                                "(RESULTS_DIR/NAME/PHASE_EPOCH); run test.py first")
    result: dict = {"dataroot": str(args.dataroot), "fake_B": str(fake_dir),
                    "toy": toy_translation_metrics(args.dataroot, fake_dir)}
    fid_args = evaluate.build_parser().parse_args(
        ["--real", str(args.dataroot / f"{MASKED_SPLIT}B"), "--fake", str(fake_dir)]
        + (["--gpu_ids", args.gpu_ids] if args.gpu_ids is not None else []))
    try:
        fid = evaluate.evaluate(fid_args, Path(fid_args.real), fake_dir)
        result.update({k: fid[k] for k in ("fid", "kid_mean", "kid_std", "n_real", "n_fake")})
    except (WeightsError, ValueError) as err:  # the toy score stands on its own
        result.update(fid=None, fid_error=str(err))
    result["summary"] = summary_lines(result)
    (args.results / SCORE_JSON).write_text(json.dumps(result, indent=1) + "\n")
    write_results_page(args.results)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        result = score(args)
    except (OSError, ValueError) as err:
        print(f"toy_score: error: {err}", file=sys.stderr)
        return 2
    print(f"translation score of {result['fake_B']} ({result['toy']['n_images']} images):")
    for line in result["summary"]:
        print(f"  {line}")
    print(f"written to {args.results / SCORE_JSON}; shown on {args.results / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
