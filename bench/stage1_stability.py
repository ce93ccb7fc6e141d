"""Does the cooperative stage stay healthy over a full default-length stage (5 epochs)?

    python -m bench.stage1_stability                 # trains (cat2dog, 240 images, 64 px: ~12 min on 2 cores)
    python -m bench.stage1_stability --summarize     # only re-reads the finished run's log

Trains a real run whose whole budget is stage 1 (`--coop_epochs 5`, 5 epochs) with every
iteration logged, then prints per epoch: the largest |f| of data, proposals and revisions (the
energies must stay finite and bounded), the chain's mean change |y_tilde - y_hat|, the share of
iterations whose chain climbed f, and the teaching / EBM / NCE losses. A non-finite value would
have stopped training with the quantity named (models/base_model.check_finite).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from util.run_log import read_jsonl  # noqa: E402

RUN_NAME = "stage1_5epochs"


def train(args: argparse.Namespace) -> None:
    subprocess.run([sys.executable, str(REPO / "train.py"), "--dataroot", str(args.dataroot), "--name", RUN_NAME,
                    "--checkpoints_dir", str(args.runs_dir), "--max_dataset_size", str(args.images),
                    "--load_size", "72", "--crop_size", "64", "--ngf", "32", "--netG", "resnet_6blocks",
                    "--n_epochs", str(args.epochs), "--n_epochs_decay", "0", "--coop_epochs", str(args.epochs),
                    "--print_freq", "1", "--display_id", "0", "--update_html_freq", "1000000",
                    "--save_latest_freq", "1000000", "--gpu_ids", "-1", "--num_threads", "1"], check=True)


def summarize(log: Path) -> str:
    entries = [e for e in read_jsonl(log) if e["stage"] == "coop"]
    shown = log.relative_to(REPO) if log.is_relative_to(REPO) else log
    lines = [f"{len(entries)} cooperative iterations logged ({shown})", "",
             "| epoch | max abs f (data / proposal / revised) | mean change | chains climbing | teach | EBM | NCE |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for epoch in sorted({e["epoch"] for e in entries}):
        losses = [e["losses"] for e in entries if e["epoch"] == epoch]

        def column(name: str) -> list[float]:
            return [entry[name] for entry in losses]
        peaks = " / ".join(f"{max(abs(v) for v in column(k)):.1f}" for k in ("f_data", "f_proposal", "f_revised"))
        lines.append(f"| {epoch} | {peaks} | {statistics.mean(column('langevin_change')):.4f} | "
                     f"{100 * statistics.mean(column('langevin_improved')):.0f} % | "
                     f"{statistics.mean(column('teach')):.2e} | {statistics.mean(column('EBM')):.2f} | "
                     f"{statistics.mean(column('NCE')):.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataroot", type=Path, default=REPO.parent / "shared" / "datasets" / "cat2dog")
    parser.add_argument("--images", type=int, default=240, help="training images per domain")
    parser.add_argument("--epochs", type=int, default=5, help="length of the (whole-run) cooperative stage")
    parser.add_argument("--runs_dir", type=Path, default=REPO / "bench" / "runs" / "long_stage1")
    parser.add_argument("--summarize", action="store_true", help="do not train; summarize the existing log")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "stage1_stability.md")
    args = parser.parse_args()
    if not args.summarize:
        train(args)
    text = summarize(args.runs_dir / RUN_NAME / "loss_log.jsonl")
    print(text)
    args.out.write_text(f"{text}\n\nCommand: `python -m bench.stage1_stability`\n")


if __name__ == "__main__":
    main()
