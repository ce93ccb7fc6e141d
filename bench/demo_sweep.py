"""Variants of `make demo` over seeds, scored with the toy masks: how the demo's flags were chosen.

    python -m bench.demo_sweep --seeds 0 1 2                               # the demo itself
    python -m bench.demo_sweep --config "nce2=--lambda_NCE 2" "CUT=--coop_epochs 0" --seeds 0 1 2
    python -m bench.demo_sweep --config base= "lr5=--lr 0.0005" --gpu_ids 0 --jobs 16   # a GPU sweep

Each run is the demo's train.py command (its flags come from `make demo-flags`, so the Makefile stays
their one place) plus the config's extra flags (later flags win), then test.py, then the toy score
(:func:`datasets.toy_metrics.toy_translation_metrics`: stripe strength relative to real zebras,
mean silhouette IoU and the share of images with IoU >= 0.5, background change; no FID, which on 50
images says little between variants). Prints one line per run and a table of mean ± std per config,
and writes both to OUT/demo_sweep.md and the raw scores to OUT/demo_sweep.jsonl.

GAN runs this short are sensitive to rounding: the same seed on another device, or with another
thread count, follows another trajectory. Compare configs over seeds, on one kind of machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench.quality import mean_std  # noqa: E402
from datasets.make_toy_dataset import generate  # noqa: E402
from datasets.toy_metrics import toy_translation_metrics  # noqa: E402

DEFAULT_DATA = REPO / "bench" / "runs" / "toy64_demo"
SCORES = ("stripe_strength", "silhouette_iou", "silhouette_kept", "background_error")


def parse_config(text: str) -> tuple[str, list[str]]:
    """"NAME=FLAGS" -> (NAME, shell-split FLAGS); ArgumentTypeError without a name."""
    name, sep, flags = text.partition("=")
    if not sep or not name or name.startswith("-") or any(c in name for c in "/ "):
        raise argparse.ArgumentTypeError(f"--config {text!r}: expected NAME=FLAGS, e.g. 'nce2=--lambda_NCE 2'")
    return name, shlex.split(flags)


def demo_flags(*, dataroot: Path, name: str, checkpoints: Path, seed: int) -> list[str]:
    """train.py's flags of `make demo` for this run (printed by the Makefile's demo-flags target)."""
    out = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(REPO), "demo-flags",
                          f"DEMO_DATA={dataroot}", f"DEMO_NAME={name}", f"DEMO_CHECKPOINTS={checkpoints}",
                          f"SEED={seed}"], check=True, capture_output=True, text=True).stdout
    return shlex.split(out)


def run(args: argparse.Namespace, *, config: str, extra: list[str], seed: int) -> dict:
    """Train, translate and score one (config, seed); a finished run is read back, not redone."""
    name = f"{config}_s{seed}"
    done = args.out / "runs" / name / "score.json"
    if done.exists() and not args.rerun:
        return json.loads(done.read_text())
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    checkpoints, results = args.out / "checkpoints", args.out / "runs"
    log = results / name / "log.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        flags = demo_flags(dataroot=args.dataroot, name=name, checkpoints=checkpoints, seed=seed)
        for argv in ([sys.executable, "train.py", *flags, "--gpu_ids", args.gpu_ids, "--display_id", "0", *extra],
                     [sys.executable, "test.py", "--dataroot", str(args.dataroot), "--name", name,
                      "--checkpoints_dir", str(checkpoints), "--results_dir", str(results), "--gpu_ids", args.gpu_ids]):
            out.write(shlex.join(argv) + "\n")
            out.flush()
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode:
                tail = "\n".join(log.read_text().splitlines()[-5:])
                raise SystemExit(f"demo_sweep: {Path(argv[1]).name} failed for config {config!r} seed {seed} "
                                 f"(flags {shlex.join(extra)!r}); its log is {log}, which ends:\n{tail}")
    score = toy_translation_metrics(args.dataroot, results / name / "test_latest" / "images" / "fake_B")
    result = {"config": config, "flags": shlex.join(extra), "seed": seed, **score}
    done.write_text(json.dumps(result, indent=1))
    return result


def report(results: list[dict]) -> str:
    """Per-run lines, then mean ± std per config (markdown)."""
    lines = [f"- {r['config']} seed {r['seed']}: " + ", ".join(f"{k} {r[k]:.3f}" for k in SCORES) for r in results]
    lines += ["", "| config | flags | seeds | " + " | ".join(SCORES) + " |", "| --- " * (3 + len(SCORES)) + "|"]
    for config in dict.fromkeys(r["config"] for r in results):
        rs = [r for r in results if r["config"] == config]
        cells = [mean_std([r[key] for r in rs], 3) for key in SCORES]
        lines.append(f"| {config} | `{rs[0]['flags']}` | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", type=parse_config, default=[("demo", [])], metavar="NAME=FLAGS",
                        help="variants: a name, '=', and train.py flags added to the demo's (default: the demo)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="train.py --seed of each run; every config runs every seed (default: 0 1 2)")
    parser.add_argument("--dataroot", type=Path, default=None,
                        help=f"a toy set made by datasets/make_toy_dataset.py (default: {DEFAULT_DATA}, "
                             "generated there with the demo's arguments if missing)")
    parser.add_argument("--gpu_ids", default="-1", help="train.py's and test.py's --gpu_ids (default: %(default)s = CPU)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads per run (default: %(default)s, all of a 2-core machine's, as the demo uses)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default: %(default)s; on a CPU keep jobs x threads <= cores)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "runs" / "demo_sweep",
                        help="checkpoints, test results and the report (default: %(default)s)")
    parser.add_argument("--rerun", action="store_true", help="redo runs that already have a score.json")
    args = parser.parse_args(argv)
    if args.dataroot is None:
        args.dataroot = DEFAULT_DATA
        generate(DEFAULT_DATA)  # `make demo` runs the generator with its defaults too
    jobs = [(config, extra, seed) for seed in args.seeds for config, extra in args.config]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run(args, config=job[0], extra=job[1], seed=job[2]), jobs))
    text = report(results)
    print(text)
    (args.out / "demo_sweep.md").write_text(text + "\n")
    with (args.out / "demo_sweep.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
