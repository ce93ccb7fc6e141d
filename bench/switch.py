"""What happens at CoopInit's switch to adversarial training? Plain CUT vs CoopInit-CUT, same iterations.

    python -m bench.switch                      # toy set at the demo's flags, 3 arms (~10 min on 2 cores)
    python -m bench.switch --summarize          # re-read the finished runs

Each arm is a real train.py run (a subprocess) with a recorder patched into CUTModel. For the
first `--window` iterations after the switch point (the same iteration numbers in every arm; for
plain CUT there is no switch, just the same iterations) it records, every iteration:

- D's raw scores on the real and generated images of the batch (mean, std over patches);
- each loss term (D_real, D_fake, G_GAN, NCE, NCE_Y);
- the gradient norm each of G's terms sends into G's parameters (G_GAN, NCE, NCE_Y), taken
  with the random state forked so the run itself is unchanged;
- the size of the update G's optimizer made, as RMS and max of |delta theta| / lr.

Writes bench/results/switch.{md,json,png}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
# The demo's training flags (Makefile) with a 1-epoch cooperative stage of 150 iterations.
TRAIN_FLAGS = ["--gpu_ids", "-1", "--load_size", "64", "--crop_size", "64", "--ngf", "32", "--ndf", "32",
               "--netG", "resnet_6blocks", "--n_epochs", "2", "--n_epochs_decay", "0", "--max_dataset_size", "150",
               "--num_threads", "1", "--display_id", "0", "--print_freq", "25", "--update_html_freq", "1000000",
               "--save_latest_freq", "1000000", "--save_epoch_freq", "1000000"]
ARMS = {"CUT": ["--coop_epochs", "0"],
        "CoopInit, hard switch": ["--coop_epochs", "1", "--coop_calibrate_D", "false"],
        "CoopInit, calibrated switch": ["--coop_epochs", "1", "--coop_calibrate_D", "true"]}
SWITCH = 150  # iteration index of the switch in the CoopInit arms (1 epoch of 150 images)


def install_recorder(out: Path, *, start: int, window: int) -> None:
    """Patch CUTModel so iterations [start, start + window) append one JSON line each to `out`."""
    import torch

    from models.cut_model import CUTModel
    from models.gan_loss import gan_loss

    optimize, original_generator_loss, record = CUTModel.optimize, CUTModel.generator_loss, {}

    def grad_norm(loss: torch.Tensor, params: list[torch.Tensor]) -> float:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return float(torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None)))

    def generator_loss(self: CUTModel, weight: float) -> torch.Tensor:
        total = original_generator_loss(self, weight)
        if record:
            params = [p for p in self.netG.parameters() if p.requires_grad]
            with torch.random.fork_rng(devices=[]):
                terms = {"G_GAN": gan_loss(self.netD(self.fake_B), target_is_real=True, mode=self.opt.gan_mode)
                         * self.opt.lambda_GAN if weight > 0 else None,
                         "NCE": self.nce_loss(self.real_A, self.fake_B, self.keys_A)}
                if self.opt.nce_idt:
                    terms["NCE_Y"] = self.nce_loss(self.real_B, self.idt_B, self.keys_B)
                record["grad_norm"] = {k: grad_norm(v, params) for k, v in terms.items() if v is not None}
        return total

    def recording_optimize(self: CUTModel, iteration: int) -> str:
        if not start <= iteration < start + window:
            return optimize(self, iteration)
        record.update(iteration=iteration)
        with torch.no_grad():
            for name, images in (("real", self.real_B), ("fake", self.netG(self.real_A))):
                scores = self.netD(images).float()
                record[f"D_{name}_mean"], record[f"D_{name}_std"] = float(scores.mean()), float(scores.std())
        before = [p.detach().clone() for p in self.netG.parameters()]
        stage = optimize(self, iteration)
        lr = self.optimizers["G"].param_groups[0]["lr"]
        steps = torch.cat([(p.detach() - b).flatten() for p, b in zip(self.netG.parameters(), before)]) / lr
        record.update(stage=stage, update_rms=float(steps.pow(2).mean().sqrt()), update_max=float(steps.abs().max()),
                      losses={k: float(v) for k, v in self.losses.items()})
        with out.open("a") as f:
            f.write(json.dumps(record) + "\n")
        record.clear()
        return stage

    CUTModel.generator_loss = generator_loss
    CUTModel.optimize = recording_optimize


def run_arm(args: argparse.Namespace, arm: str, seed: int) -> Path:
    out = args.runs_dir / f"{slug(arm)}_seed{seed}.jsonl"
    if out.exists() and not args.rerun:
        return out
    out.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run([sys.executable, "-m", "bench.switch", "--worker", str(out), "--start", str(SWITCH),
                    "--window", str(args.window), "--", "--dataroot", str(args.dataroot), "--name",
                    f"{slug(arm)}_seed{seed}", "--checkpoints_dir", str(args.runs_dir), "--seed", str(seed),
                    *TRAIN_FLAGS, *ARMS[arm]], check=True, cwd=REPO, stdout=subprocess.DEVNULL, env=env)
    return out


def slug(arm: str) -> str:
    return arm.lower().replace(",", "").replace(" ", "_")


def summarize(runs: dict[str, list[list[dict]]], window: int) -> str:
    """Markdown table: per arm, means over seeds of per-phase means (first 10 iterations, the rest)."""
    def phase(records: list[dict], lo: int, hi: int, key) -> float:
        values = [key(r) for r in records if lo <= r["iteration"] - SWITCH < hi]
        return statistics.mean(values)

    columns = [("D(real) mean", lambda r: r["D_real_mean"]), ("D(fake) mean", lambda r: r["D_fake_mean"]),
               ("D(real) std", lambda r: r["D_real_std"]), ("D_real", lambda r: r["losses"]["D_real"]),
               ("D_fake", lambda r: r["losses"]["D_fake"]), ("G_GAN", lambda r: r["losses"]["G_GAN"]),
               ("NCE", lambda r: r["losses"]["NCE"]), ("|grad G_GAN|", lambda r: r["grad_norm"]["G_GAN"]),
               ("|grad NCE|", lambda r: r["grad_norm"]["NCE"]), ("G update RMS / lr", lambda r: r["update_rms"]),
               ("G update max / lr", lambda r: r["update_max"])]
    lines = ["| arm | iterations after the switch | " + " | ".join(c for c, _ in columns) + " |",
             "| --- | --- | " + " | ".join("---" for _ in columns) + " |"]
    for arm, seeds in runs.items():
        for lo, hi in ((0, 10), (10, window)):
            cells = [statistics.mean(phase(recs, lo, hi, key) for recs in seeds) for _, key in columns]
            lines.append(f"| {arm} | {lo + 1}-{hi} | " + " | ".join(f"{c:.3g}" for c in cells) + " |")
    return "\n".join(lines)


def plot(runs: dict[str, list[list[dict]]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("D's mean raw score (solid: real, dashed: generated)", None),
              ("D loss (D_real + D_fake) / 2", lambda r: 0.5 * (r["losses"]["D_real"] + r["losses"]["D_fake"])),
              ("gradient norm into G from G_GAN", lambda r: r["grad_norm"]["G_GAN"]),
              ("gradient norm into G from NCE", lambda r: r["grad_norm"]["NCE"]),
              ("G's update, RMS |delta theta| / lr", lambda r: r["update_rms"]),
              ("PatchNCE loss (NCE)", lambda r: r["losses"]["NCE"])]
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    colors = dict(zip(runs, ("tab:blue", "tab:red", "tab:green", "tab:purple")))
    for ax, (title, key) in zip(axes.flat, panels):
        for arm, seeds in runs.items():
            for i, recs in enumerate(seeds):
                x = [r["iteration"] - SWITCH + 1 for r in recs]
                label = arm if i == 0 else None
                if key is None:
                    ax.plot(x, [r["D_real_mean"] for r in recs], color=colors[arm], alpha=0.7, label=label)
                    ax.plot(x, [r["D_fake_mean"] for r in recs], color=colors[arm], alpha=0.7, ls="--")
                else:
                    ax.plot(x, [key(r) for r in recs], color=colors[arm], alpha=0.7, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iterations after the switch")
        ax.grid(alpha=0.3)
        if title.startswith(("gradient", "G's update", "D loss")):
            ax.set_yscale("log")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataroot", type=Path, default=REPO / "bench" / "runs" / "toy64")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--window", type=int, default=100, help="iterations recorded after the switch")
    parser.add_argument("--runs_dir", type=Path, default=REPO / "bench" / "runs" / "switch")
    parser.add_argument("--rerun", action="store_true")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--summarize", action="store_true", help="only re-read finished runs")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, help=argparse.SUPPRESS)
    parser.add_argument("train_args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        install_recorder(args.worker, start=args.start, window=args.window)
        import train
        sys.exit(train.main(args.train_args))
    if not (args.dataroot / "trainA").is_dir():
        subprocess.run([sys.executable, str(REPO / "datasets" / "make_toy_dataset.py"), "--out", str(args.dataroot),
                        "--size", "64"], check=True)
    args.runs_dir.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: run_arm(args, *job), [(arm, s) for arm in ARMS for s in args.seeds]))
    runs = {arm: [[json.loads(line) for line in (args.runs_dir / f"{slug(arm)}_seed{s}.jsonl").read_text().splitlines()]
                  for s in args.seeds] for arm in ARMS}
    text = (f"{summarize(runs, args.window)}\n\nMeans over seeds {args.seeds} of each phase's per-iteration values. "
            f"Command: `python -m bench.switch {' '.join(sys.argv[1:])}`".rstrip() + "\n")
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "switch.md").write_text(text)
    (RESULTS / "switch.json").write_text(json.dumps(runs))
    plot(runs, RESULTS / "switch.png")


if __name__ == "__main__":
    main()
