"""Speed side by side with the reference CUT code, in the same run: training s/iter, test.py s/image
and peak memory, as medians over interleaved repeats, and their ratios.

    python bench/speed.py --reference PATH            # the full table (about 20 min on 2 quiet cores)
    python bench/speed.py --reference PATH --quick    # one small configuration: a smoke test (~3 min)
    python bench/speed.py --reference PATH --variants fast plain amp   # also Winograd off, and --amp

PATH is a checkout of the reference, github taesungp/contrastive-unpaired-translation at commit
b3ac297 (bench/reference_cut.py's REFERENCE_COMMIT, the one this project's reference fixtures come from):

    git clone https://github.com/taesungp/contrastive-unpaired-translation PATH
    git -C PATH checkout b3ac297708dfb6f7589d04662277e53c0d579c27

A copy without .git is recognised by its .py files' git blob hashes (python_fingerprint).

Without --reference the default folder is bench/runs/reference_cut, cloned there if missing (needs
git and network access). The reference runs unmodified, in this interpreter, with the same torch
threads: a child process puts PATH first on sys.path, builds its dataset and CUTModel from its own
TrainOptions, and calls data_dependent_initialize, setup, parallelize, set_input and
optimize_parameters in the order its train.py does (its visdom/HTML logging is off, as ours is here).
This code runs train.py's Trainer and CUTModel.optimize the same way. Both use the same data (the
toy set at 256 px, generated if missing), crop, batch size and one data-loader worker.

- Training: each child times `--iters` iterations after `--warmup` (data wait included) and reports
  their median; peak memory is the child's peak RSS (VmHWM; data-loader workers not included).
- test.py: each script runs as a user runs it, twice per repeat, on `--test_small` and then
  `--test_small + --test_images` images at 256 px; the difference of the wall times divided by
  `--test_images` is the steady cost per image (start-up, model loading and the first image cancel
  out). Both translate the same weights: a checkpoint written by the reference code, which this
  code's test.py reads. Peak memory: the larger run's peak RSS.
- Repeats: `--rounds` rounds; in each, every configuration runs once per implementation, the order
  alternating between rounds (ours first, then reference first). Reported: the median over rounds,
  the speed-up as reference / ours of those medians, and the range of the per-round speed-ups.

- Generator forward: G alone on one random 1 x 3 x --test_crop^2 image, the reference's checkpoint in
  both, `--generator_iters` calls after the first (reported apart: torch.compile compiles there) and
  `--warmup` more; the only place the variant compile is timed (training and test.py have no
  compiled path).
- On a GPU (--gpu_ids 0): every timed call ends with torch.cuda.synchronize, and the peak GPU memory
  is torch.cuda.max_memory_allocated of each run's process (test.py: peak RSS only). The reference
  runs in float32 (it has no bfloat16 path).
- The JSON (--out) and its markdown table (.md beside it) are rewritten after every run: a run cut
  short by a time limit keeps what it measured.

The CoopInit stage (cooperative stage 1, ours only) is compared with the reference's CUT iteration.
Variants of this code (--variants): fast = defaults (Winograd convolutions in float32 on CPU), plain
= the same with direct convolutions (COOPINIT_WINOGRAD=0), amp = with --amp (bfloat16 autocast).
Prints a markdown table and writes every child's result as JSON (--out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `bench.*` when run as a script; this code's `train`, `models`, ... in the children
from bench import reference_cut  # noqa: E402
from bench.timing import endless, peak_memory, timed_forwards, timed_iterations  # noqa: E402

MODES = {  # this code's train.py flags per mode; the reference gets --CUT_mode
    "cut": ["--CUT_mode", "CUT", "--coop_epochs", "0"],
    "fastcut": ["--CUT_mode", "FastCUT", "--coop_epochs", "0"],
    "coop": ["--CUT_mode", "CUT", "--coop_epochs", "1000"],  # every timed iteration is in stage 1
}
VARIANTS = {"fast": [], "plain": [], "amp": ["--amp"], "compile": []}  # this code's extra flags per variant
COMPILED = {"compile"}  # torch.compile of the generator: timed on generator inference only
LABELS = {"cut": "CUT training", "fastcut": "FastCUT training", "coop": "CoopInit stage 1 training"}
KIND_LABELS = {"test": "test.py", "generator": "generator forward (resnet_9blocks, batch 1)"}


def variant_environment(variant: str) -> dict:
    """plain: direct convolutions instead of Winograd (models/networks/winograd.py reads this)."""
    return {"COOPINIT_WINOGRAD": "0"} if variant == "plain" else {}


# -- inside the child processes ----------------------------------------------------------------
def train_ours(args: argparse.Namespace) -> dict:
    import torch
    import train
    from options.train_options import TrainOptions
    from util.runtime import keep_freed_memory

    keep_freed_memory()  # as train.py does
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--dataroot", args.dataroot, "--name", "speed", "--checkpoints_dir", tmp, "--crop_size",
                str(args.crop), "--load_size", str(args.crop), "--batch_size", str(args.batch_size),
                "--num_threads", str(args.workers), "--display_id", "0", "--no_html", "--seed", "0",
                "--gpu_ids", args.gpu_ids] + MODES[args.mode] + VARIANTS[args.variant]
        options = TrainOptions()
        trainer = train.Trainer(options.parse(argv), options)
        model, device = trainer.model, trainer.device
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        iteration = 0

        def step(batch: dict) -> None:
            nonlocal iteration
            model.set_input(batch)
            model.optimize(iteration)
            sync()
            iteration += 1

        times, cpu = timed_iterations(endless(trainer.loader, trainer.sampler.start), step,
                                      warmup=args.warmup, iters=args.iters)
        return {"sec_per_iter": statistics.median(times), "cpu_sec_per_iter": statistics.median(cpu), "times": times,
                **peak_memory(torch), "stage": model.schedule.stage(0)}


def generator_ours(args: argparse.Namespace) -> dict:
    """This code's G as test.py prepares it (the reference's checkpoint in --out), timed on its own;
    variant compile wraps it in torch.compile (default inductor mode)."""
    import torch
    from models import create_model
    from options.test_options import TestOptions
    from util.runtime import keep_freed_memory, select_device

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    opt = TestOptions().parse(["--dataroot", args.dataroot, "--name", "speed", "--checkpoints_dir", args.out,
                               "--crop_size", str(args.crop), "--load_size", str(args.crop), "--gpu_ids",
                               args.gpu_ids, *VARIANTS[args.variant]])
    device = select_device(opt.gpu_ids)
    model = create_model(opt, device)
    model.load_networks(Path(args.out) / "speed", "latest", ["G"])
    model.prepare_inference()
    if args.variant in COMPILED:
        model.netG = torch.compile(model.netG)
    dtype = next(model.netG.parameters()).dtype
    return timed_forwards(torch, model.translate, size=args.crop, device=device, dtype=dtype, args=args)


CHILD_JOBS = {"train_ours": train_ours, "train_reference": reference_cut.train_reference,
              "reference_checkpoint": reference_cut.reference_checkpoint, "generator_ours": generator_ours,
              "generator_reference": reference_cut.generator_reference}


# -- the parent ---------------------------------------------------------------------------------
def run_child(args: argparse.Namespace, job: str, **settings: object) -> dict:
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", job, "--dataroot", args.dataroot,
            "--reference", args.reference, "--threads", str(args.threads), "--workers", str(args.workers),
            "--warmup", str(args.warmup), "--iters", str(args.iters), "--generator_iters", str(args.generator_iters),
            "--gpu_ids", args.gpu_ids]
    for key, value in settings.items():
        argv += [f"--{key}", str(value)]
    env = {**os.environ, **variant_environment(str(settings.get("variant", "")))}
    out = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{job} {settings} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_script(argv: list[str], *, cwd: Path, env: dict) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of one script run."""
    with tempfile.TemporaryFile("w+") as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(argv)} failed:\n{errors.read()[-3000:]}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def test_script_per_image(args: argparse.Namespace, impl: str, checkpoints: Path, results: Path) -> dict:
    """test.py's steady seconds per image: (T(small + images) - T(small)) / images."""
    common = ["--dataroot", args.dataroot, "--name", "speed", "--checkpoints_dir", str(checkpoints),
              "--results_dir", str(results / impl), "--load_size", str(args.test_crop), "--crop_size",
              str(args.test_crop), "--gpu_ids", args.gpu_ids]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if impl == "reference":
        argv, cwd = reference_cut.reference_test_command(args.reference, common)
    else:
        argv, cwd = [sys.executable, str(REPO / "test.py"), *common, *VARIANTS[impl]], REPO
        env.update(variant_environment(impl))
    small, small_cpu, _ = run_script(argv + ["--num_test", str(args.test_small)], cwd=cwd, env=env)
    large, large_cpu, peak = run_script(argv + ["--num_test", str(args.test_small + args.test_images)], cwd=cwd,
                                        env=env)
    if large <= small:  # the images' cost drowned in the scripts' start-up noise: no figure to report
        raise RuntimeError(f"test.py ({impl}): {args.test_small + args.test_images} images took {large:.2f} s, "
                           f"{args.test_small} took {small:.2f} s: the per-image cost is below the start-up noise; "
                           "raise --test_images or --test_crop")
    return {"sec_per_image": (large - small) / args.test_images,
            "cpu_sec_per_image": (large_cpu - small_cpu) / args.test_images,
            "wall_small": small, "wall_large": large, "peak_mib": peak}


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def max_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def summarize(rows: dict, order: list[tuple]) -> list[dict]:
    """Medians over rounds and speed-ups (reference / ours, of the medians) per configuration, by wall
    time and by CPU time (CPU time is steadier on a shared machine: it leaves out waiting for a core)."""
    summary = []
    for key in order:
        kind, mode, crop, impl = key
        ours = rows[key]
        ref = rows.get((kind, "cut" if mode == "coop" else mode, crop, "reference"))
        unit = "iter" if kind == "train" else "image"
        entry = {"kind": kind, "mode": mode, "crop": crop, "impl": impl, "rounds": len(ours),
                 "ours": statistics.median(r[f"sec_per_{unit}"] for r in ours),
                 "ours_cpu": statistics.median(r[f"cpu_sec_per_{unit}"] for r in ours),
                 "ours_peak_mib": max(r["peak_mib"] for r in ours),
                 "ours_gpu_peak_mib": max_known(r.get("gpu_peak_mib") for r in ours)}
        if "first_call_s" in ours[0]:
            entry["ours_first_call_s"] = statistics.median(r["first_call_s"] for r in ours)
        if ref:
            entry["ref_gpu_peak_mib"] = max_known(r.get("gpu_peak_mib") for r in ref)
            paired = [a[f"sec_per_{unit}"] / b[f"sec_per_{unit}"] for a, b in zip(ref, ours)]
            entry.update(reference=statistics.median(r[f"sec_per_{unit}"] for r in ref),
                         reference_cpu=statistics.median(r[f"cpu_sec_per_{unit}"] for r in ref),
                         ref_peak_mib=max(r["peak_mib"] for r in ref), speedup_min=min(paired),
                         speedup_max=max(paired))
            entry.update(speedup=entry["reference"] / entry["ours"],
                         speedup_cpu=entry["reference_cpu"] / entry["ours_cpu"])
        summary.append(entry)
    return summary


def table(summary: list[dict], env: dict) -> str:
    lines = [f"{env['machine']}; torch {env['torch']}, {env['threads']} threads, {env['device']}; "
             f"reference {env['reference_commit']}; {env['rounds']} interleaved rounds, medians", "",
             "| what | crop | variant | reference | this code | speed-up (range over rounds) | "
             "speed-up by CPU time | peak RSS reference / this code (MiB) | peak GPU memory reference / "
             "this code (MiB) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summary:
        unit = "s/iter" if s["kind"] == "train" else "s/image"
        what = LABELS[s["mode"]] if s["kind"] == "train" else KIND_LABELS[s["kind"]]
        gpu = " / ".join("-" if s.get(k) is None else f"{s[k]:.0f}" for k in ("ref_gpu_peak_mib", "ours_gpu_peak_mib"))
        if s.get("ours_first_call_s") is not None:
            what += f" (first call {s['ours_first_call_s']:.1f} s)"
        against = " (vs reference CUT)" if s["mode"] == "coop" else ""
        if "speedup" in s:
            ref = f"{s['reference']:.4f} {unit}"
            speed = f"**{s['speedup']:.2f}x**{against} ({s['speedup_min']:.2f}-{s['speedup_max']:.2f})"
            speed_cpu = f"{s['speedup_cpu']:.2f}x"
            memory = f"{s['ref_peak_mib']:.0f} / {s['ours_peak_mib']:.0f}"
        else:
            ref = speed = speed_cpu = "-"
            memory = f"- / {s['ours_peak_mib']:.0f}"
        lines.append(f"| {what} | {s['crop']} | {s['impl']} | {ref} | {s['ours']:.4f} {unit} | {speed} | "
                     f"{speed_cpu} | {memory} | {gpu} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=str(REPO / "bench" / "runs" / "reference_cut"),
                        help="checkout of the reference CUT code (cloned here if missing)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES),
                        help="training modes (coop = CoopInit's stage 1, this code only)")
    parser.add_argument("--crops", nargs="*", type=int, default=[128, 256],
                        help="training crop sizes (give none to time only test.py)")
    parser.add_argument("--batch_size", type=int, default=1, help="training batch size")
    parser.add_argument("--variants", nargs="+", default=["fast"], choices=list(VARIANTS),
                        help="this code's variants: fast = defaults, plain = direct convolutions "
                             "instead of Winograd (CPU), amp = --amp (bfloat16 autocast), compile = "
                             "torch.compile of the generator (generator forward only: training and "
                             "test.py have no compiled path)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats of every configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training iterations first")
    parser.add_argument("--iters", type=int, default=4, help="timed training iterations per run (median)")
    parser.add_argument("--test_crop", type=int, default=256,
                        help="test.py and generator-forward image size (0 = skip both)")
    parser.add_argument("--test_small", type=int, default=2, help="images of the shorter test.py run")
    parser.add_argument("--test_images", type=int, default=12,
                        help="extra images of the longer test.py run (the per-image cost is over these)")
    parser.add_argument("--test_rounds", type=int, default=None,
                        help="rounds of test.py (default: --rounds; 0 = skip test.py, e.g. where the "
                             "generator forward says enough)")
    parser.add_argument("--generator_iters", type=int, default=10,
                        help="timed generator forwards per run at --test_crop (0 = skip); the variant compile "
                             "(torch.compile) is timed only here, its compilation as the first call")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, in both")
    parser.add_argument("--workers", type=int, default=1, help="training data-loader workers (--num_threads)")
    parser.add_argument("--gpu_ids", default="-1", help="-1 = CPU, 0 = first GPU (both codes' flag)")
    parser.add_argument("--dataroot", default=str(REPO / "bench" / "runs" / "speed_data"),
                        help="dataset (generated from the toy generator at 256 px if missing)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "speed.json"),
                        help="JSON output, rewritten after every run (a killed run keeps what it measured); "
                             "the markdown table goes beside it as .md")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: CUT training at 64 px, one round, 2 timed iterations; test.py on 1 "
                             "and 5 images at 256 px")
    parser.add_argument("--child", choices=list(CHILD_JOBS), help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="cut", help=argparse.SUPPRESS)
    parser.add_argument("--crop", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="fast", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(CHILD_JOBS[args.child](args)))
        return
    if args.quick:
        args.modes, args.crops, args.rounds, args.warmup, args.iters = ["cut"], [64], 1, 1, 2
        # test.py at 256 px: at 64 px a few images cost less than the scripts' start-up varies
        args.test_crop, args.test_small, args.test_images, args.generator_iters = 256, 1, 4, 2
    args.reference = str(Path(args.reference).resolve())
    commit = reference_cut.obtain_reference(Path(args.reference))
    if not Path(args.dataroot, "trainA").is_dir():
        subprocess.run([sys.executable, str(REPO / "datasets" / "make_toy_dataset.py"), "--out", args.dataroot,
                        "--size", "256", "--n_train", "40", "--n_test", "16"], check=True)
    args.dataroot = str(Path(args.dataroot).resolve())

    import torch  # the parent only reads versions and the device's name
    env = {"machine": machine(), "torch": torch.__version__, "python": platform.python_version(),
           "threads": args.threads, "rounds": args.rounds, "reference_commit": commit,
           "device": "CPU" if args.gpu_ids == "-1" else f"GPU {torch.cuda.get_device_name(int(args.gpu_ids))}",
           "command": " ".join(sys.argv)}
    plain_variants = [v for v in args.variants if v not in COMPILED]
    if len(plain_variants) < len(args.variants):
        print("note: variant compile is timed on the generator forward only (training and test.py have no "
              "torch.compile path)", flush=True)
    configs: list[tuple[str, str, int, list[str], int]] = []  # kind, mode, crop, implementations, rounds
    for crop in args.crops:
        for mode in args.modes:
            impls = (["reference"] if mode in reference_cut.REFERENCE_MODES else []) + plain_variants
            configs.append(("train", mode, crop, impls, args.rounds))
    # test.py before the generator forward: under a time limit, compile's compilation comes last
    test_rounds = args.rounds if args.test_rounds is None else args.test_rounds
    if args.test_crop and test_rounds and plain_variants:
        configs.append(("test", "cut", args.test_crop, ["reference", *plain_variants], test_rounds))
    if args.test_crop and args.generator_iters:
        configs.append(("generator", "cut", args.test_crop, ["reference", *args.variants], args.rounds))
    rows: dict[tuple, list[dict]] = {}
    order = [(kind, mode, crop, impl) for kind, mode, crop, impls, _ in configs for impl in impls
             if impl != "reference"]
    with tempfile.TemporaryDirectory() as tmp:
        if args.test_crop:
            run_child(args, "reference_checkpoint", out=tmp, crop=args.test_crop)
        for round_index in range(max(rounds for *_, rounds in configs)):
            for kind, mode, crop, impls, rounds in configs:
                if round_index >= rounds:
                    continue
                for impl in (impls if round_index % 2 == 0 else impls[::-1]):
                    if kind == "train":
                        job = "train_reference" if impl == "reference" else "train_ours"
                        result = run_child(args, job, mode=mode, crop=crop, variant=impl)
                        shown = f"{result['sec_per_iter']:.4f} s/iter"
                    elif kind == "generator":
                        job = "generator_reference" if impl == "reference" else "generator_ours"
                        result = run_child(args, job, out=tmp, crop=crop, variant=impl)
                        shown = f"{result['sec_per_image']:.4f} s/image, first call {result['first_call_s']:.1f} s"
                    else:
                        result = test_script_per_image(args, impl, Path(tmp), Path(tmp) / "results")
                        shown = f"{result['sec_per_image']:.4f} s/image"
                    rows.setdefault((kind, mode, crop, impl), []).append(result)
                    gpu = "" if result.get("gpu_peak_mib") is None else f", GPU peak {result['gpu_peak_mib']:.0f} MiB"
                    print(f"round {round_index + 1}: {kind} {mode} {crop} px, {impl}: {shown}, "
                          f"peak RSS {result['peak_mib']:.0f} MiB{gpu}", flush=True)
                    report = write_results(args.out, env, rows, order)
    print("\n" + report)


def write_results(out: str, env: dict, rows: dict, order: list[tuple]) -> str:
    """The JSON (every run, and the summary of those so far) at `out` and the markdown table beside
    it (.md); returns the table."""
    summary = summarize(rows, [key for key in order if key in rows])
    report = table(summary, env)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"environment": env, "summary": summary,
                                "runs": {" ".join(map(str, k)): v for k, v in rows.items()}}, indent=1))
    path.with_suffix(".md").write_text(report + "\n")
    return report


if __name__ == "__main__":
    main()
