"""The reference CUT code, github taesungp/contrastive-unpaired-translation, as bench/speed.py times
it: finds and checks its checkout (cloned at REFERENCE_COMMIT if missing; a copy without .git is
recognised by python_fingerprint) and runs it unmodified in this interpreter: its training
iterations, its generator and its test.py."""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.timing import endless, peak_memory, timed_forwards, timed_iterations

REPO = Path(__file__).resolve().parent.parent
REFERENCE_URL = "https://github.com/taesungp/contrastive-unpaired-translation"
REFERENCE_COMMIT = "b3ac297708dfb6f7589d04662277e53c0d579c27"
# python_fingerprint of the reference at REFERENCE_COMMIT (its 39 .py files, from `git ls-tree -r`)
REFERENCE_PY_FINGERPRINT = "e9735b55892e980d3dcb7ca4341f81a8391d41fb"
REFERENCE_MODES = {"cut": "CUT", "fastcut": "FastCUT"}  # bench/speed.py's modes the reference has: its --CUT_mode


def reference_options(args: argparse.Namespace, checkpoints_dir: str, mode: str, *, train: bool = True) -> list[str]:
    """The reference's flags for its TrainOptions (train) or TestOptions (which have no --display_id)."""
    return ["--dataroot", args.dataroot, "--name", "speed", "--checkpoints_dir", checkpoints_dir,
            "--crop_size", str(args.crop), "--load_size", str(args.crop), "--batch_size", str(args.batch_size),
            "--num_threads", str(args.workers), *(["--display_id", "0"] if train else []), "--gpu_ids",
            args.gpu_ids, "--CUT_mode", REFERENCE_MODES[mode]]


def import_reference(path: str) -> None:
    """Put the reference checkout first on sys.path (its packages share our packages' names)."""
    sys.path[:] = [path] + [p for p in sys.path if Path(p or ".").resolve() not in (REPO, REPO / "bench")]
    os.chdir(path)


def train_reference(args: argparse.Namespace) -> dict:
    """Its training on --dataroot in --mode, step by step as its train.py runs it: seconds per iteration
    (wall and CPU, median over --iters after --warmup) and peak memory (timing.peak_memory)."""
    import_reference(args.reference)
    import torch
    from data import create_dataset
    from models import create_model
    from options.train_options import TrainOptions

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        sys.argv = ["train.py", *reference_options(args, tmp, args.mode)]  # its options read sys.argv too
        opt = TrainOptions().parse()
        dataset = create_dataset(opt)
        model = create_model(opt)
        sync = torch.cuda.synchronize if opt.gpu_ids else (lambda: None)
        first = True

        def step(data: dict) -> None:
            nonlocal first
            if first:  # as its train.py does on the first batch
                model.data_dependent_initialize(data)
                model.setup(opt)
                model.parallelize()
                first = False
            model.set_input(data)
            model.optimize_parameters()
            sync()

        times, cpu = timed_iterations(endless(dataset, dataset.set_epoch), step, warmup=args.warmup,
                                      iters=args.iters)
        return {"sec_per_iter": statistics.median(times), "cpu_sec_per_iter": statistics.median(cpu), "times": times,
                **peak_memory(torch)}


def reference_checkpoint(args: argparse.Namespace) -> dict:
    """The reference's CUT model, initialised as its train.py does, saved as `latest` into --out."""
    import_reference(args.reference)
    import torch
    from data import create_dataset
    from models import create_model
    from options.train_options import TrainOptions

    torch.manual_seed(0)
    sys.argv = ["train.py", *reference_options(args, args.out, "cut")]
    opt = TrainOptions().parse()
    model = create_model(opt)
    model.data_dependent_initialize(next(iter(create_dataset(opt))))
    model.setup(opt)
    if opt.gpu_ids:  # as the reference's train.py; on the CPU it would save "module."-prefixed keys
        model.parallelize()
    model.save_networks("latest")
    return {"checkpoint": str(Path(args.out) / "speed")}


def generator_reference(args: argparse.Namespace) -> dict:
    """The reference's G, loaded by its own setup() from the checkpoint in --out, in float32."""
    import_reference(args.reference)
    import torch
    from models import create_model
    from options.test_options import TestOptions

    torch.set_num_threads(args.threads)
    sys.argv = ["test.py", *reference_options(args, args.out, "cut", train=False)]
    opt = TestOptions().parse()
    model = create_model(opt)
    model.setup(opt)
    net = model.netG.eval()
    device = next(net.parameters()).device

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(x)

    return timed_forwards(torch, forward, size=args.crop, device=device, dtype=torch.float32, args=args)


def reference_test_command(reference: str, flags: list[str]) -> tuple[list[str], Path]:
    """Its test.py as a user runs it, from the checkout at `reference`, with `flags` in CUT mode: the
    command line and the folder to run it in."""
    return [sys.executable, "test.py", *flags, "--CUT_mode", REFERENCE_MODES["cut"]], Path(reference)


def obtain_reference(path: Path) -> str:
    """The reference checkout at `path`, cloned at REFERENCE_COMMIT if missing; returns a note on
    which commit it is. Raises SystemExit if it cannot be cloned or is not the reference code."""
    if not path.exists():
        print(f"cloning the reference CUT code into {path} ...", flush=True)
        try:
            subprocess.run(["git", "clone", "--quiet", REFERENCE_URL, str(path)], check=True)
            subprocess.run(["git", "-C", str(path), "checkout", "--quiet", REFERENCE_COMMIT], check=True)
        except (OSError, subprocess.CalledProcessError) as err:
            raise SystemExit(f"error: could not clone {REFERENCE_URL} ({err}); clone it elsewhere and pass "
                             f"--reference PATH (see python bench/speed.py --help)") from err
    if not (path / "models" / "cut_model.py").is_file() or not (path / "train.py").is_file():
        raise SystemExit(f"error: --reference {path} is not a checkout of {REFERENCE_URL} "
                         "(no models/cut_model.py or train.py there)")
    top = subprocess.run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode == 0 and Path(top.stdout.strip()).resolve() == path.resolve():
        commit = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        if commit != REFERENCE_COMMIT:
            print(f"warning: --reference {path} is at {commit}, not {REFERENCE_COMMIT}", file=sys.stderr)
        return commit
    # a copy without .git (or inside another repository, whose HEAD says nothing about it)
    if python_fingerprint(path) == REFERENCE_PY_FINGERPRINT:
        return f"{REFERENCE_COMMIT} (a copy without .git: its .py files are that commit's)"
    print(f"warning: --reference {path} is not a git checkout and its .py files differ from "
          f"{REFERENCE_COMMIT}'s", file=sys.stderr)
    return "not a git checkout, .py files differ from the reference commit"


def python_fingerprint(path: Path) -> str:
    """SHA-1 of the sorted lines "relative/path.py <git blob SHA-1>" of the .py files under `path`
    (hidden folders and __pycache__ left out): equal to REFERENCE_PY_FINGERPRINT for an unmodified
    copy of the reference code at REFERENCE_COMMIT, with or without its .git."""
    lines = []
    for file in path.rglob("*.py"):
        relative = file.relative_to(path)
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts[:-1]):
            continue
        data = file.read_bytes()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # what git ls-tree lists
        lines.append(f"{relative.as_posix()} {blob}\n")
    return hashlib.sha1("".join(sorted(lines)).encode()).hexdigest()


if __name__ == "__main__":
    sys.exit("bench/reference_cut.py is a library of bench/speed.py, not a command: "
             "python bench/speed.py --help runs the reference side by side with this code")
