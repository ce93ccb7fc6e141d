"""The run log: console lines, a human-readable loss_log.txt and a machine-readable loss_log.jsonl.

loss_log.jsonl holds one object per logged iteration:
    {"epoch": 3, "iter": 1200, "epoch_iter": 200, "stage": "coop", "stage_start": 1, "losses": {...},
     "sec_per_iter": 0.21, "data_sec": 0.01}
`iter` counts training iterations (1-based); `stage_start` is the first iteration of the record's
stage, so a plot marks the switch where it happened rather than at the next logged iteration. On
resume, entries past the checkpoint are dropped so the log has no duplicated or missing iterations.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path


EVAL_LOG = "eval_log.jsonl"


def read_jsonl(path: str | Path) -> list[dict]:
    """The objects of a jsonl log; [] if missing. A line torn by a kill is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def format_losses(*, epoch: int, iteration: int, epoch_iter: int, stage: str, losses: dict[str, float],
                  sec_per_iter: float, data_sec: float) -> str:
    """CUT's console line, with the stage: (epoch: 3, iters: 200, time: 0.21, data: 0.01) [coop] EBM: ..."""
    values = " ".join(f"{name}: {value:.4g}" for name, value in losses.items())
    return (f"(epoch: {epoch}, iters: {epoch_iter}, total: {iteration}, time: {sec_per_iter:.3f}, "
            f"data: {data_sec:.3f}) [{stage}] {values}")


class RunLog:
    """Appends to checkpoints/NAME/loss_log.{txt,jsonl}; `resume_from` trims the jsonl first."""

    def __init__(self, run_dir: str | Path, *, resume_from: int | None = None, enabled: bool = True):
        self.enabled = enabled
        self.txt_path = Path(run_dir) / "loss_log.txt"
        self.jsonl_path = Path(run_dir) / "loss_log.jsonl"
        if not enabled:
            return
        if resume_from is None:
            self.jsonl_path.unlink(missing_ok=True)
        else:
            self._truncate_after(resume_from)
        with open(self.txt_path, "a") as log:
            state = "fresh" if resume_from is None else f"resumed after iteration {resume_from}"
            log.write(f"================ Training Loss ({time.strftime('%c')}, {state}) ================\n")

    def _truncate_after(self, iteration: int) -> None:
        """Keep entries with iter <= iteration (and drop a torn last line from a kill)."""
        if not self.jsonl_path.exists():
            return
        kept = []
        for line in self.jsonl_path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if entry.get("iter", 0) <= iteration:
                kept.append(line)
        tmp = self.jsonl_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        os.replace(tmp, self.jsonl_path)

    def message(self, text: str) -> None:
        """A line for the console and loss_log.txt (stage switches, resumes, evaluations)."""
        if not self.enabled:
            return
        print(text, flush=True)
        with open(self.txt_path, "a") as log:
            log.write(text + "\n")

    def log(self, *, epoch: int, iteration: int, epoch_iter: int, stage: str, stage_start: int,
            losses: dict[str, float], sec_per_iter: float, data_sec: float) -> None:
        if not self.enabled:
            return
        entry = {"epoch": epoch, "iter": iteration, "epoch_iter": epoch_iter, "stage": stage,
                 "stage_start": stage_start, "losses": losses,
                 "sec_per_iter": round(sec_per_iter, 6), "data_sec": round(data_sec, 6)}
        self.message(format_losses(epoch=epoch, iteration=iteration, epoch_iter=epoch_iter, stage=stage,
                                   losses=losses, sec_per_iter=sec_per_iter, data_sec=data_sec))
        with open(self.jsonl_path, "a") as log:
            log.write(json.dumps(entry) + "\n")
