"""Does CoopInit help? Plain CUT vs CoopInit-CUT at the same budget, same data, same seeds; a third
arm also resets every Adam moment at the switch (--coop_reset_optimizers all).

    python bench/quality.py                         # cat2dog (real photos) and the toy set, 3 seeds per arm
    python bench/quality.py --datasets toy --seeds 0 --quick

Each run is a real `train.py` run (subprocess) with in-training evaluation (--eval_freq): FID/KID
of the translated test split against testB, every `--eval_every` epochs. All arms use the
same seeds, so each seed sees the identical image order and augmentations in every arm (data
randomness is keyed by (seed, epoch, index)); the arms differ only in their CoopInit flags. The test
split is used for reporting only; nothing is tuned on it. Prints a markdown table (FID/KID at
the end and best during training, mean ± std over seeds, wall time) and writes it, the raw
numbers (JSON) and a plot of FID over training to bench/results/.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATASETS = {"cat2dog": REPO.parent / "shared" / "datasets" / "cat2dog", "toy": REPO / "bench" / "runs" / "toy64"}
# train.py flags per arm; the CoopInit arms take --coop_epochs from the command line.
ARMS = {"CUT": ["--coop_epochs", "0"], "CoopInit-CUT": [],
        "CoopInit-CUT-reset": ["--coop_reset_optimizers", "all"]}
COLORS = {"CUT": "tab:blue", "CoopInit-CUT": "tab:orange", "CoopInit-CUT-reset": "tab:green"}


def train_argv(args: argparse.Namespace, *, dataset: str, arm: str, seed: int) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), "--dataroot", str(DATASETS[dataset]),
            "--name", f"{dataset}_{arm}_seed{seed}", "--checkpoints_dir", str(args.runs_dir),
            "--seed", str(seed), "--coop_epochs", str(args.coop_epochs), *ARMS[arm], "--gpu_ids", "-1",
            "--display_id", "0",
            "--load_size", str(args.load_size), "--crop_size", str(args.crop_size),
            "--max_dataset_size", str(args.images), "--n_epochs", str(args.n_epochs),
            "--n_epochs_decay", str(args.n_epochs_decay), "--eval_freq", str(args.eval_every),
            "--eval_max_images", str(args.eval_images), "--num_threads", "1", "--print_freq", "50",
            "--update_html_freq", "1000000", "--save_epoch_freq", "1000000", "--save_latest_freq", "1000000",
            *args.extra]


def run(args: argparse.Namespace, *, dataset: str, arm: str, seed: int) -> dict:
    run_dir = args.runs_dir / f"{dataset}_{arm}_seed{seed}"
    done = run_dir / "quality_run.json"
    if done.exists() and not args.rerun:
        return json.loads(done.read_text())
    start = time.perf_counter()
    # Thread count made explicit: two spinning OpenMP pools on two cores (e.g. two benchmarks side
    # by side, --threads 2 each) are many times slower than one thread each.
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    subprocess.run(train_argv(args, dataset=dataset, arm=arm, seed=seed), check=True,
                   stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - start
    evals = [json.loads(line) for line in (run_dir / "eval_log.jsonl").read_text().splitlines()]
    result = {"dataset": dataset, "arm": arm, "seed": seed, "wall_s": wall, "evals": evals,
              "final": evals[-1], "best": min(evals, key=lambda e: e["fid"])}
    done.write_text(json.dumps(result, indent=1))
    return result


def mean_std(values: list[float], digits: int) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def table(results: list[dict]) -> str:
    lines = ["| dataset | arm | seeds | FID final | KID final (x100) | FID best | KID at best (x100) | wall time (min) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        for arm in ARMS:
            rs = [r for r in results if r["dataset"] == dataset and r["arm"] == arm]
            if not rs:
                continue
            lines.append(f"| {dataset} | {arm} | {len(rs)} | {mean_std([r['final']['fid'] for r in rs], 1)} | "
                         f"{mean_std([100 * r['final']['kid_mean'] for r in rs], 2)} | "
                         f"{mean_std([r['best']['fid'] for r in rs], 1)} | "
                         f"{mean_std([100 * r['best']['kid_mean'] for r in rs], 2)} | "
                         f"{mean_std([r['wall_s'] / 60 for r in rs], 1)} |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for r in (r for r in results if r["dataset"] == dataset):
            ax.plot([e["iter"] for e in r["evals"]], [e["fid"] for e in r["evals"]], color=COLORS[r["arm"]],
                    alpha=0.8, marker="o", markersize=3, label=f"{r['arm']} (seed {r['seed']})")
        ax.set_title(f"{dataset}: FID on the test split during training")
        ax.set_xlabel("iteration")
        ax.set_ylabel("FID (lower is better)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["cat2dog", "toy"], choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS),
                        help="CUT; CoopInit-CUT; CoopInit-CUT-reset: all Adam moments reset at the switch")
    parser.add_argument("--coop_epochs", type=float, default=1.0, help="stage-1 length of the CoopInit arm")
    parser.add_argument("--images", type=int, default=400, help="training images per domain (--max_dataset_size)")
    parser.add_argument("--n_epochs", type=int, default=4)
    parser.add_argument("--n_epochs_decay", type=int, default=2)
    parser.add_argument("--eval_every", type=int, default=1, help="epochs between FID/KID evaluations")
    parser.add_argument("--eval_images", type=int, default=200, help="test images per domain for FID/KID")
    parser.add_argument("--load_size", type=int, default=72)
    parser.add_argument("--crop_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per training run")
    parser.add_argument("--runs_dir", type=Path, default=REPO / "bench" / "runs" / "quality")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--rerun", action="store_true", help="ignore finished runs in --runs_dir")
    parser.add_argument("--quick", action="store_true", help="a tiny budget: checks the pipeline, not quality")
    parser.add_argument("extra", nargs="*", help="more train.py flags after --, e.g. -- --ngf 32")
    args = parser.parse_args()
    if args.quick:
        args.images, args.n_epochs, args.n_epochs_decay, args.eval_images = 20, 1, 1, 20
        args.runs_dir = args.runs_dir.with_name("quality_quick")
        args.extra += ["--ngf", "8", "--ndf", "8", "--netG", "resnet_4blocks"]
    if "toy" in args.datasets and not (DATASETS["toy"] / "trainA").is_dir():
        subprocess.run([sys.executable, str(REPO / "datasets" / "make_toy_dataset.py"), "--out",
                        str(DATASETS["toy"]), "--size", "64"], check=True)
    results = []
    for dataset in args.datasets:
        for seed in args.seeds:
            for arm in args.arms:
                result = run(args, dataset=dataset, arm=arm, seed=seed)
                print(f"{dataset} {arm} seed {seed}: final FID {result['final']['fid']:.1f}, best "
                      f"{result['best']['fid']:.1f} (epoch {result['best']['epoch']}), {result['wall_s'] / 60:.1f} min",
                      flush=True)
                results.append(result)
    command = "python bench/quality.py " + " ".join(sys.argv[1:])
    text = f"{table(results)}\n\nCommand: `{command.strip()}`\n"
    print("\n" + text)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "quality.md").write_text(text)
        (args.out / "quality.json").write_text(json.dumps(results, indent=1))
        plot(results, args.out / "quality_fid.png")


if __name__ == "__main__":
    main()
