"""Kill/resume soak test: SIGKILL a tiny training run at random moments, resume it, check nothing is lost.

Each cycle starts `train.py` (with --continue_train once a `latest` state exists) and SIGKILLs its
process group at a random moment of one of three kinds:

- startup: during imports, the dataset check, the resume or the log truncation;
- training: at a random phase of an iteration, at progress targets spread over the whole run, so
  kills land in both CoopInit stages;
- write: while a checkpoint file is being written (its temp file is seen in the run folder).

After every kill each checkpoint file must load with torch.load(weights_only=True) and the run may
have lost at most --save_latest_freq iterations. When the kills are done the run must finish its
last epoch with a loss_log.jsonl that holds every iteration exactly once, and (unless
--no-reference) its losses and final weights must equal those of an uninterrupted run.

Run: .venv/bin/python -m bench.soak              (24 kills, about 5 minutes on 2 busy cores)
     .venv/bin/python -m bench.soak --kills 4    (about a minute)
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.schedule import StageSchedule  # noqa: E402
from util.checkpoint import safe_load  # noqa: E402
from util.run_log import read_jsonl  # noqa: E402

ITERS_PER_EPOCH = 8  # --max_dataset_size 8, --batch_size 1
STARTUP, TRAINING, WRITE = "startup", "training", "write"


@dataclass
class Kill:
    mode: str
    progress: int  # iterations done when the process died
    resumed_from: int  # the iteration the `latest` state left behind says
    during_write: bool  # a checkpoint temp file was left: the kill interrupted a write
    stage: str  # the stage of the iteration that was running

    @property
    def lost(self) -> int:
        return self.progress - self.resumed_from


@dataclass
class Summary:
    kills: list[Kill] = field(default_factory=list)
    checkpoints_verified: int = 0
    total_iterations: int = 0
    matches_reference: bool | None = None
    seconds: float = 0.0

    @property
    def kills_during_write(self) -> int:
        return sum(k.during_write for k in self.kills)

    @property
    def max_lost(self) -> int:
        return max((k.lost for k in self.kills), default=0)

    def stages(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for kill in self.kills:
            counts[kill.stage] = counts.get(kill.stage, 0) + 1
        return counts

    def report(self, save_latest_freq: int) -> str:
        modes = {m: sum(k.mode == m for k in self.kills) for m in (STARTUP, TRAINING, WRITE)}
        reference = {None: "not run", True: "identical", False: "DIFFERENT"}[self.matches_reference]
        return "\n".join([
            f"soak: {len(self.kills)} SIGKILLs survived ({', '.join(f'{n} {m}' for m, n in modes.items())}); "
            f"by stage: {self.stages()}",
            f"  kills during a checkpoint write: {self.kills_during_write}",
            f"  max iterations lost per kill: {self.max_lost} (--save_latest_freq {save_latest_freq})",
            f"  checkpoint files verified with weights_only=True: {self.checkpoints_verified}",
            f"  finished all {self.total_iterations} iterations; loss_log.jsonl: each iteration once",
            f"  losses and final weights vs an uninterrupted run: {reference}",
            f"  wall time: {self.seconds:.0f} s",
        ])


class SoakFailure(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SoakFailure(message)


def logged_iterations(run_dir: Path) -> list[int]:
    """`iter` of every complete line of loss_log.jsonl (a kill may tear the last one)."""
    return [entry["iter"] for entry in read_jsonl(run_dir / "loss_log.jsonl") if "iter" in entry]


def printed_iterations(log: Path, offset: int) -> list[int]:
    """Iterations a train.py process printed to its log past `offset` (its own, unlike loss_log.jsonl,
    which still holds the killed run's iterations until the resumed one truncates it)."""
    with open(log, "rb") as handle:
        handle.seek(offset)
        return [int(n) for n in re.findall(rb"total: (\d+),", handle.read())]


def temp_files(run_dir: Path) -> list[Path]:
    return sorted(run_dir.glob(".*.tmp"))


def saved_iteration(run_dir: Path) -> int:
    """Where --continue_train would resume: the iteration in latest_state.pth (0 without one)."""
    path = run_dir / "latest_state.pth"
    return safe_load(path)["iteration"] if path.exists() else 0


def verify_checkpoints(run_dir: Path) -> int:
    """Load every checkpoint file with weights_only=True (safe_load raises if one is torn)."""
    paths = sorted(run_dir.glob("*.pth"))
    for path in paths:
        safe_load(path)
    return len(paths)


class Soak:
    def __init__(self, workdir: Path, *, kills: int, seed: int, save_latest_freq: int, epochs: int,
                 coop_epochs: float, num_threads: int):
        self.workdir, self.kills, self.save_latest_freq = workdir, kills, save_latest_freq
        self.rng = random.Random(seed)
        self.total = epochs * ITERS_PER_EPOCH
        self.schedule = StageSchedule.from_epochs(coop_epochs=coop_epochs, iters_per_epoch=ITERS_PER_EPOCH,
                                                  blend_iters=0)
        self.dataroot = workdir / "toy"
        self.flags = [
            "--dataroot", str(self.dataroot), "--checkpoints_dir", str(workdir / "checkpoints"),
            "--gpu_ids", "-1", "--display_id", "0", "--num_threads", str(num_threads),
            "--load_size", "32", "--crop_size", "32", "--ngf", "8", "--ndf", "8", "--netG", "resnet_4blocks",
            "--netF_nc", "16", "--num_patches", "16", "--max_dataset_size", str(ITERS_PER_EPOCH),
            "--coop_langevin_steps", "2", "--coop_epochs", str(coop_epochs), "--n_epochs", str(epochs - 1),
            "--n_epochs_decay", "1", "--print_freq", "1", "--save_latest_freq", str(save_latest_freq),
            "--save_epoch_freq", "1", "--update_html_freq", "4", "--seed", str(seed),
        ]
        self.env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.startup_s = 10.0  # replaced by the measured time to the first iteration

    def run_dir(self, name: str) -> Path:
        return self.workdir / "checkpoints" / name

    def start(self, name: str, resume: bool) -> subprocess.Popen:
        argv = [sys.executable, str(ROOT / "train.py"), *self.flags, "--name", name]
        log = open(self.workdir / f"{name}.log", "ab")
        # Its own session: the SIGKILL reaches the data-loader workers too, as a preemption would.
        proc = subprocess.Popen(argv + (["--continue_train"] if resume else []), stdout=log,
                                stderr=subprocess.STDOUT, env=self.env, cwd=ROOT, start_new_session=True)
        log.close()
        return proc

    def wait_for(self, proc: subprocess.Popen, log: Path, offset: int, target: int, timeout: float = 300) -> bool:
        """Until this process has done iteration `target` (True) or has ended (False)."""
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if max(printed_iterations(log, offset), default=0) >= target:
                return True
            check(time.monotonic() < deadline, f"no progress to iteration {target} in {timeout} s")
            time.sleep(0.02)
        return False

    @staticmethod
    def wait_for_write(proc: subprocess.Popen, run_dir: Path, timeout: float = 60) -> None:
        """Until a checkpoint temp file appears (or the process ends, or `timeout`)."""
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if any(name.startswith(".") and ".pth." in name for name in os.listdir(run_dir)):
                return
            time.sleep(0.0005)

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def cycle(self, name: str, number: int, summary: Summary) -> None:
        """One start of train.py and one SIGKILL; records the kill in `summary`."""
        run_dir, log = self.run_dir(name), self.workdir / f"{name}.log"
        resume = (run_dir / "latest_state.pth").exists()
        resumed = saved_iteration(run_dir)
        stale = set(temp_files(run_dir))  # left by the previous kill; the next start deletes them
        mode = self.rng.choices((STARTUP, TRAINING, WRITE), weights=(1, 3, 3))[0]
        # Progress targets spread evenly over the run put kills in both stages.
        spread = round((number + 1) * (self.total - self.save_latest_freq) / (self.kills + 1))
        target = min(max(spread + self.rng.randint(-1, 1), resumed + 1), self.total - 1)
        if target <= resumed:  # nothing left to train but the end of the last epoch
            mode = STARTUP
        offset = log.stat().st_size if log.exists() else 0
        began = time.monotonic()
        proc = self.start(name, resume)
        try:
            if mode == STARTUP:
                time.sleep(self.rng.uniform(0.3, 1.0) * self.startup_s)
            else:
                reached = self.wait_for(proc, log, offset, target)
                check(reached, f"train.py exited with {proc.returncode} before iteration {target}: see {name}.log")
                if not resume:
                    self.startup_s = time.monotonic() - began
                if mode == TRAINING:
                    time.sleep(self.rng.uniform(0.0, 0.3))  # a random phase of the next iteration
                else:
                    self.wait_for_write(proc, run_dir)
        finally:
            self.kill(proc)
        progress = max(printed_iterations(log, offset), default=resumed)
        during_write = bool(set(temp_files(run_dir)) - stale)
        after = saved_iteration(run_dir)
        summary.checkpoints_verified += verify_checkpoints(run_dir)
        kill = Kill(mode=mode, progress=progress, resumed_from=after, during_write=during_write,
                    stage=self.schedule.stage(progress))
        summary.kills.append(kill)
        print(f"kill {number + 1}/{self.kills} ({mode}, {kill.stage} stage): {progress} iterations done, "
              f"resumes from {after}, lost {kill.lost}" + (", during a checkpoint write" if during_write else ""),
              flush=True)
        check(kill.lost <= self.save_latest_freq,
              f"kill {number + 1} lost {kill.lost} iterations (> --save_latest_freq {self.save_latest_freq})")

    def finish(self, name: str, summary: Summary) -> None:
        run_dir = self.run_dir(name)
        proc = self.start(name, resume=(run_dir / "latest_state.pth").exists())
        check(proc.wait() == 0, f"the final run exited with {proc.returncode}: see {name}.log")
        check(b"training finished" in (self.workdir / f"{name}.log").read_bytes(), "no 'training finished' line")
        summary.checkpoints_verified += verify_checkpoints(run_dir)
        state = safe_load(run_dir / "latest_state.pth")
        epochs = self.total // ITERS_PER_EPOCH
        check(state["iteration"] == self.total and state["epoch"] == epochs + 1,
              f"the run ended at iteration {state['iteration']}, epoch {state['epoch']}")
        for epoch in range(1, epochs + 1):
            check((run_dir / f"{epoch}_net_G.pth").exists(), f"{epoch}_net_G.pth is missing")
        check(not temp_files(run_dir), f"temp files left: {temp_files(run_dir)}")
        iters = logged_iterations(run_dir)
        check(iters == list(range(1, self.total + 1)),
              f"loss_log.jsonl iterations are not 1..{self.total} once each: {iters}")
        entries = [json.loads(line) for line in (run_dir / "loss_log.jsonl").read_text().splitlines()]
        check(all(e["stage"] == self.schedule.stage(e["iter"] - 1) for e in entries), "a logged stage is wrong")
        summary.total_iterations = self.total

    def matches(self, name: str, reference: str) -> bool:
        """Same losses at every iteration and the same final weights as the uninterrupted run."""
        def losses(run: str) -> list[dict]:
            text = (self.run_dir(run) / "loss_log.jsonl").read_text()
            return [json.loads(line)["losses"] for line in text.splitlines()]

        if losses(name) != losses(reference):
            return False
        for net in ("G", "D", "F"):
            mine = safe_load(self.run_dir(name) / f"latest_net_{net}.pth")
            theirs = safe_load(self.run_dir(reference) / f"latest_net_{net}.pth")
            if any(not torch.equal(value, theirs[key]) for key, value in mine.items()):
                return False
        return True

    def run(self, *, reference: bool) -> Summary:
        began = time.monotonic()
        subprocess.run([sys.executable, str(ROOT / "datasets" / "make_toy_dataset.py"), "--size", "32",
                        "--out", str(self.dataroot), "--n_train", str(ITERS_PER_EPOCH), "--n_test", "2"],
                       check=True, stdout=subprocess.DEVNULL, env=self.env)
        summary = Summary()
        for number in range(self.kills):
            self.cycle("soak", number, summary)
        self.finish("soak", summary)
        if reference:
            self.finish("reference", Summary())
            summary.matches_reference = self.matches("soak", "reference")
            check(summary.matches_reference, "the killed-and-resumed run differs from the uninterrupted one")
        summary.seconds = time.monotonic() - began
        return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=24, help="SIGKILLs before the run may finish")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill schedule and of training")
    parser.add_argument("--save_latest_freq", type=int, default=2, help="checkpoint every N iterations")
    parser.add_argument("--epochs", type=int, default=6, help=f"epochs of {ITERS_PER_EPOCH} iterations")
    parser.add_argument("--coop_epochs", type=float, default=2.5, help="CoopInit stage length in epochs")
    parser.add_argument("--num_threads", type=int, default=0, help="data-loader workers of train.py")
    parser.add_argument("--no-reference", action="store_true", help="skip the uninterrupted comparison run")
    parser.add_argument("--workdir", type=Path, default=None, help="keep runs and logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        soak = Soak(workdir, kills=args.kills, seed=args.seed, save_latest_freq=args.save_latest_freq,
                    epochs=args.epochs, coop_epochs=args.coop_epochs, num_threads=args.num_threads)
        try:
            summary = soak.run(reference=not args.no_reference)
        except SoakFailure as err:
            print(f"soak FAILED: {err} (logs in {workdir})", file=sys.stderr)
            return 1
    print(summary.report(args.save_latest_freq))
    return 0


if __name__ == "__main__":
    sys.exit(main())
