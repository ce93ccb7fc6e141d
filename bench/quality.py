"""Does CoopInit help? Plain CUT vs CoopInit-CUT at the same budget, same data, same seeds, with
the candidate ways to switch from the cooperative to the adversarial stage as further arms.

    python bench/quality.py                         # cat2dog (real photos) and the toy set, 3 seeds per arm
    python bench/quality.py --datasets toy --seeds 0 --quick
    python bench/quality.py --datasets toy --arms CUT hard calibrated reset-all D-warmup blend
    python bench/quality.py --report gpu_c2d_limited cpu_c2d_limited   # pool finished results, run nothing

Each run is a real `train.py` run (subprocess) with in-training evaluation (--eval_freq): FID/KID
of the translated test split against testB, every `--eval_every` epochs. All arms use the
same seeds, so each seed sees the identical image order and augmentations in every arm (data
randomness is keyed by (seed, epoch, index)); the arms differ only in their CoopInit flags. The test
split is used for reporting only; nothing is tuned on it. Prints a markdown table (FID/KID at
the end and best during training, mean ± std over seeds, wall time) and writes it, the raw
numbers (JSON) and a plot of FID over training to bench/results/; then each arm minus CUT, paired by
seed, with a paired t-test. On the toy set each run is also
translated by test.py and scored with the toy masks (silhouette kept, stripe strength relative to
real zebras, background change; datasets/make_toy_dataset.py).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from datasets.toy_metrics import toy_translation_metrics  # noqa: E402

DATASETS = {"cat2dog": REPO.parent / "shared" / "datasets" / "cat2dog", "toy": REPO / "bench" / "runs" / "toy64"}
# train.py flags per arm; the CoopInit arms take --coop_epochs from the command line. "CoopInit-CUT"
# is the product's defaults; the others are the switch candidates of issue 11, each spelled out in full.
HARD = ["--coop_calibrate_D", "false", "--coop_reset_optimizers", "none", "--coop_blend_iters", "0"]
ARMS = {"CUT": ["--coop_epochs", "0"],
        "CoopInit-CUT": [],
        "hard": HARD,
        "calibrated": [*HARD, "--coop_calibrate_D", "true"],
        "calibrated-reset-D": [*HARD, "--coop_calibrate_D", "true", "--coop_reset_optimizers", "D"],
        "reset-all": [*HARD, "--coop_reset_optimizers", "all"],
        "blend": [*HARD, "--coop_blend_iters", "50"],
        "energy-reg": [*HARD, "--coop_energy_reg", "0.01"],
        "D-warmup": HARD}
# Arms that change the model in a way no product flag does: patched into the training process.
PATCHED = {"D-warmup": 50}  # G gets no GAN loss for this many iterations after the switch: D catches up first
COLORS = dict(zip(ARMS, ("tab:blue", "tab:orange", "tab:red", "tab:green", "tab:olive", "tab:purple", "tab:brown",
                         "tab:pink", "tab:gray")))


def train_argv(args: argparse.Namespace, *, dataset: str, arm: str, seed: int) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), "--dataroot", str(DATASETS[dataset]),
            "--name", f"{dataset}_{arm}_seed{seed}", "--checkpoints_dir", str(args.runs_dir),
            "--seed", str(seed), "--coop_epochs", str(args.coop_epochs), *ARMS[arm], "--gpu_ids", args.gpu_ids,
            "--display_id", "0",
            "--load_size", str(args.load_size), "--crop_size", str(args.crop_size),
            "--max_dataset_size", str(args.images), "--n_epochs", str(args.n_epochs),
            "--n_epochs_decay", str(args.n_epochs_decay), "--eval_freq", str(args.eval_every),
            "--eval_max_images", str(args.eval_images), "--num_threads", "1", "--print_freq", "50",
            "--update_html_freq", "1000000", "--save_epoch_freq", "1000000", "--save_latest_freq", "1000000",
            *args.extra]


def install_d_warmup(iters: int) -> None:
    """Patch CUTModel so G's GAN term is off for `iters` iterations after the switch (D-only warm-up)."""
    from models.cut_model import CUTModel
    from models.schedule import ADVERSARIAL

    generator_loss, optimize, state = CUTModel.generator_loss, CUTModel.optimize, {}

    def patched_optimize(self, iteration: int) -> str:
        state["warmup"] = self.schedule.stage(iteration) == ADVERSARIAL and \
            iteration < self.schedule.coop_iters + self.schedule.blend_iters + iters
        return optimize(self, iteration)

    def patched_generator_loss(self, weight: float):
        lambda_gan = self.opt.lambda_GAN
        self.opt.lambda_GAN = 0.0 if state["warmup"] else lambda_gan
        try:
            return generator_loss(self, weight)
        finally:
            self.opt.lambda_GAN = lambda_gan

    CUTModel.optimize, CUTModel.generator_loss = patched_optimize, patched_generator_loss


def toy_scores(args: argparse.Namespace, *, dataset: str, run_dir: Path, env: dict) -> dict:
    """test.py on the toy testA, then the mask-based translation scores."""
    results_dir = run_dir / "test_results"
    subprocess.run([sys.executable, str(REPO / "test.py"), "--dataroot", str(DATASETS[dataset]), "--name",
                    run_dir.name, "--checkpoints_dir", str(run_dir.parent), "--results_dir", str(results_dir),
                    "--gpu_ids", args.gpu_ids, "--num_threads", "0"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=env)
    return toy_translation_metrics(DATASETS[dataset], results_dir / run_dir.name / "test_latest" / "images" / "fake_B")


def run(args: argparse.Namespace, *, dataset: str, arm: str, seed: int) -> dict:
    run_dir = args.runs_dir / f"{dataset}_{arm}_seed{seed}"
    done = run_dir / "quality_run.json"
    if done.exists() and not args.rerun:
        return json.loads(done.read_text())
    start = time.perf_counter()
    # Thread count made explicit: two spinning OpenMP pools on two cores (e.g. two benchmarks side
    # by side, --threads 2 each) are many times slower than one thread each.
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    argv = train_argv(args, dataset=dataset, arm=arm, seed=seed)
    if arm in PATCHED:
        argv = [sys.executable, "-m", "bench.quality", "--worker", arm, "--", *argv[2:]]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env, cwd=REPO)
    wall = time.perf_counter() - start
    evals = [json.loads(line) for line in (run_dir / "eval_log.jsonl").read_text().splitlines()]
    result = {"dataset": dataset, "arm": arm, "seed": seed, "wall_s": wall, "evals": evals,
              "final": evals[-1], "best": min(evals, key=lambda e: e["fid"])}
    if dataset == "toy":
        result["toy"] = toy_scores(args, dataset=dataset, run_dir=run_dir, env=env)
    done.write_text(json.dumps(result, indent=1))
    return result


# The FID/KID columns of every report: name, value of a run, digits shown.
METRICS = (("FID final", lambda r: r["final"]["fid"], 1), ("KID final (x100)", lambda r: 100 * r["final"]["kid_mean"], 2),
           ("FID best", lambda r: r["best"]["fid"], 1), ("KID at best (x100)", lambda r: 100 * r["best"]["kid_mean"], 2))


def mean_std(values: list[float], digits: int) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {std:.{digits}f}"


def table(results: list[dict]) -> str:
    toy = any("toy" in r for r in results)
    head = "| dataset | arm | seeds | " + " | ".join(name for name, _, _ in METRICS) + " |"
    head += " silhouette IoU | silhouettes kept | stripe strength | background change |" if toy else ""
    lines = [head + " wall time (min) |", "| --- " * (head.count("|") - 1 + 1) + "|"]
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        for arm in ARMS:
            rs = [r for r in results if r["dataset"] == dataset and r["arm"] == arm]
            if not rs:
                continue
            row = (f"| {dataset} | {arm} | {len(rs)} | "
                   + "".join(f"{mean_std([metric(r) for r in rs], digits)} | " for _, metric, digits in METRICS))
            if toy:
                row += " | ".join(mean_std([r["toy"][k] for r in rs], 3) for k in
                                  ("silhouette_iou", "silhouette_kept", "stripe_strength", "background_error")) + " | "
            lines.append(row + f"{mean_std([r['wall_s'] / 60 for r in rs], 1)} |")
    return "\n".join(lines)


def paired(results: list[dict]) -> str:
    """Each arm minus CUT, run by run on the same dataset, seed and source (lower FID/KID is better, so
    a negative difference favours the arm): mean ± std of the differences, on how many pairs the arm
    was better, and the two-sided p-value of a paired t-test (scipy.stats.ttest_1samp of the
    differences against 0). Pairing removes what a seed does to both arms alike (its image order and
    initial weights), which the per-arm spread of :func:`table` includes. Empty if no pairs."""
    from scipy.stats import ttest_1samp

    def key(r: dict) -> tuple:
        return r["dataset"], r.get("source", ""), r["seed"]
    cut = {key(r): r for r in results if r["arm"] == "CUT"}
    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        for arm in ARMS:
            pairs = [(r, cut[key(r)]) for r in results
                     if r["dataset"] == dataset and r["arm"] == arm != "CUT" and key(r) in cut]
            if not pairs:
                continue
            cells = []
            for _, metric, _ in METRICS:
                diffs = [metric(r) - metric(c) for r, c in pairs]
                better = sum(d < 0 for d in diffs)
                p = f", p {ttest_1samp(diffs, 0).pvalue:.3f}" if len(diffs) > 2 else ""
                cells.append(f"{mean_std(diffs, 2)} ({better} of {len(diffs)} better{p})")
            lines.append(f"| {dataset} | {arm} − CUT | {len(pairs)} | " + " | ".join(cells) + " |")
    if not lines:
        return ""
    head = "| dataset | difference | pairs | " + " | ".join(name for name, _, _ in METRICS) + " |"
    return "\n".join([head, "| --- " * (head.count("|") - 1) + "|", *lines])


def report(results: list[dict], command: str) -> str:
    """The markdown report: per-arm table, paired differences, every run, the command."""
    pairs = paired(results)
    pairs = f"\n\nPaired by seed (arm minus CUT; negative = arm better):\n\n{pairs}" if pairs else ""
    return f"{table(results)}{pairs}\n\nPer run:\n\n{per_seed(results)}\n\nCommand: `{command.strip()}`\n"


def per_seed(results: list[dict]) -> str:
    """One line per run: the numbers behind the means, so no outcome is hidden."""
    lines = []
    for r in results:
        source = f" ({r['source']})" if r.get("source") else ""
        line = (f"- {r['dataset']} {r['arm']} seed {r['seed']}{source}: FID {r['final']['fid']:.1f} (best {r['best']['fid']:.1f}), "
                f"KID x100 {100 * r['final']['kid_mean']:.2f}")
        if "toy" in r:
            line += (f", silhouette IoU {r['toy']['silhouette_iou']:.3f} (min {r['toy']['silhouette_iou_min']:.3f}), "
                     f"stripes {r['toy']['stripe_strength']:.3f}, background {r['toy']['background_error']:.3f}")
        lines.append(line)
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
    parser.add_argument("--arms", nargs="+", default=["CUT", "CoopInit-CUT"], choices=list(ARMS),
                        help="CUT (--coop_epochs 0); CoopInit-CUT (the defaults); hard (no calibration, no reset, "
                             "no blend); calibrated (--coop_calibrate_D); calibrated-reset-D (and D's Adam moments "
                             "reset); reset-all (all Adam moments reset); blend (50 blend iterations); energy-reg "
                             "(alpha 0.01); D-warmup (G gets no GAN loss for 50 iterations after the switch)")
    parser.add_argument("--coop_epochs", default="1", help="stage-1 length of the CoopInit arms (train.py's flag)")
    parser.add_argument("--images", type=int, default=400, help="training images per domain (--max_dataset_size)")
    parser.add_argument("--n_epochs", type=int, default=4)
    parser.add_argument("--n_epochs_decay", type=int, default=2)
    parser.add_argument("--eval_every", type=int, default=1, help="epochs between FID/KID evaluations")
    parser.add_argument("--eval_images", type=int, default=200, help="test images per domain for FID/KID")
    parser.add_argument("--load_size", type=int, default=72)
    parser.add_argument("--crop_size", type=int, default=64)
    parser.add_argument("--dataroot", nargs="+", default=[], metavar="NAME=PATH",
                        help="read a dataset from another folder, e.g. cat2dog=/data/cat2dog (same layout)")
    parser.add_argument("--gpu_ids", default="-1", help="train.py's and test.py's --gpu_ids (-1 = CPU)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    parser.add_argument("--jobs", type=int, default=2, help="training runs at a time")
    parser.add_argument("--tag", default="quality", help="names the runs folder bench/runs/TAG and the outputs "
                                                         "bench/results/TAG.{md,json} and TAG_fid.png")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--rerun", action="store_true", help="ignore finished runs in bench/runs/TAG")
    parser.add_argument("--quick", action="store_true", help="a tiny budget: checks the pipeline, not quality")
    parser.add_argument("--report", nargs="+", metavar="TAG",
                        help="run nothing: pool the finished results OUT/TAG.json of these tags (e.g. the same "
                             "setting on two machines) and print their report; runs pair by tag and seed")
    parser.add_argument("--worker", choices=list(PATCHED), help=argparse.SUPPRESS)
    parser.add_argument("extra", nargs="*", help="more train.py flags after --, e.g. -- --ngf 32")
    args = parser.parse_args()
    if args.worker:  # one patched arm's training process
        install_d_warmup(PATCHED[args.worker])
        import train
        sys.exit(train.main(args.extra))
    command = "python bench/quality.py " + " ".join(sys.argv[1:])
    if args.report:
        results = []
        for tag in args.report:
            path = args.out / f"{tag}.json"
            if not path.is_file():
                parser.error(f"--report {tag}: {path} does not exist; run bench/quality.py --tag {tag} first")
            results += [{**r, "source": tag} for r in json.loads(path.read_text())]
        print(report(results, command))
        return
    args.runs_dir = REPO / "bench" / "runs" / args.tag
    for override in args.dataroot:
        name, _, path = override.partition("=")
        if name not in DATASETS or not path:
            parser.error(f"--dataroot {override}: expected NAME=PATH with NAME in {list(DATASETS)}")
        DATASETS[name] = Path(path).resolve()
    if args.quick:
        args.images, args.n_epochs, args.n_epochs_decay, args.eval_images = 20, 1, 1, 20
        args.runs_dir = args.runs_dir.with_name(args.tag + "_quick")
        args.extra += ["--ngf", "8", "--ndf", "8", "--netG", "resnet_4blocks"]
    if "toy" in args.datasets:
        subprocess.run([sys.executable, str(REPO / "datasets" / "make_toy_dataset.py"), "--out",
                        str(DATASETS["toy"]), "--size", "64"], check=True, stdout=subprocess.DEVNULL)
    jobs = [(dataset, arm, seed) for dataset in args.datasets for seed in args.seeds for arm in args.arms]

    def one(job: tuple[str, str, int]) -> dict:
        dataset, arm, seed = job
        result = run(args, dataset=dataset, arm=arm, seed=seed)
        print(f"{dataset} {arm} seed {seed}: final FID {result['final']['fid']:.1f}, best "
              f"{result['best']['fid']:.1f} (epoch {result['best']['epoch']}), {result['wall_s'] / 60:.1f} min",
              flush=True)
        return result
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, jobs))
    text = report(results, command)
    print("\n" + text)
    if not args.quick:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.tag}.md").write_text(text)
        (args.out / f"{args.tag}.json").write_text(json.dumps(results, indent=1))
        plot(results, args.out / f"{args.tag}_fid.png")


if __name__ == "__main__":
    main()
