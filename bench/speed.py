"""Training and test speed: seconds per iteration, data-loading time and peak memory.

    python bench/speed.py                       # crops 64 128 256, batch 1 and 4, CUT / FastCUT / CoopInit stage 1
    python bench/speed.py --crops 128 256 --batch_sizes 1 --modes cut fastcut coop
    python bench/speed.py --quick               # one small configuration, a smoke test

Each configuration runs in a fresh process (so peak memory is its own): the real data loader
and model of train.py, `--warmup` iterations, then the median of `--iters` timed iterations.
Data time is the wait for the next batch; the iteration time includes it. Peak memory is the
process's peak RSS on CPU, torch.cuda.max_memory_allocated on GPU. Test speed is test.py's
translate() over a folder of images at 256 px, image reading and PNG writing included.
Prints a markdown table and writes JSON (--out).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODES = {  # extra train.py flags per mode
    "cut": ["--CUT_mode", "CUT", "--coop_epochs", "0"],
    "fastcut": ["--CUT_mode", "FastCUT", "--coop_epochs", "0"],
    "coop": ["--CUT_mode", "CUT", "--coop_epochs", "1000"],  # every timed iteration is in stage 1
}


def peak_memory_mib(device) -> float:
    import torch
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_train(args: argparse.Namespace) -> dict:
    """Time train iterations of one configuration (runs inside the child process)."""
    import torch
    import train
    from options.train_options import TrainOptions

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--dataroot", args.dataroot, "--name", "speed", "--checkpoints_dir", tmp,
                "--crop_size", str(args.crop), "--load_size", str(args.crop), "--batch_size", str(args.batch_size),
                "--num_threads", str(args.workers), "--display_id", "0", "--no_html", "--seed", "0",
                "--gpu_ids", args.gpu_ids] + MODES[args.mode] + args.extra
        options = TrainOptions()
        trainer = train.Trainer(options.parse(argv), options)
        model, device = trainer.model, trainer.device
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        times, data_times = [], []
        needed = args.warmup + args.iters
        trainer.sampler.start(1)
        while len(times) < needed:
            start = time.perf_counter()
            for batch in trainer.loader:
                fetched = time.perf_counter()
                model.set_input(batch)
                model.optimize(len(times))
                sync()
                end = time.perf_counter()
                times.append(end - start)
                data_times.append(fetched - start)
                start = end
                if len(times) == needed:
                    break
        timed, data_timed = times[args.warmup:], data_times[args.warmup:]
        return {"kind": "train", "mode": args.mode, "crop": args.crop, "batch_size": args.batch_size,
                "sec_per_iter": statistics.median(timed), "data_sec": statistics.median(data_timed),
                "iters": len(timed), "peak_mib": peak_memory_mib(device), "device": str(device),
                "stage": model.schedule.stage(0)}


def worker_test(args: argparse.Namespace) -> dict:
    """test.py images per second at --crop (runs inside the child process)."""
    import torch
    import test as test_script
    from models import create_model
    from options.test_options import TestOptions
    from options.train_options import TrainOptions

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        train_opt = TrainOptions().parse(["--dataroot", args.dataroot, "--gpu_ids", args.gpu_ids])
        model = create_model(train_opt, torch.device("cpu"))
        model.save_networks(Path(tmp) / "speed", "latest")
        opt = TestOptions().parse(["--dataroot", args.dataroot, "--name", "speed", "--checkpoints_dir", tmp,
                                   "--results_dir", tmp, "--crop_size", str(args.crop), "--load_size",
                                   str(args.crop), "--num_test", str(args.test_images), "--gpu_ids", args.gpu_ids,
                                   "--num_threads", str(args.workers)] + args.extra)
        test_script.translate(opt)  # warm-up: first-call allocations and kernel choices
        rates = []
        for _ in range(args.test_repeats):
            start = time.perf_counter()
            test_script.translate(opt)
            rates.append(args.test_images / (time.perf_counter() - start))
        device = torch.device("cuda" if opt.gpu_ids not in ("-1",) and torch.cuda.is_available() else "cpu")
        return {"kind": "test", "crop": args.crop, "images": args.test_images, "repeats": len(rates),
                "images_per_sec": statistics.median(rates), "best_images_per_sec": max(rates),
                "peak_mib": peak_memory_mib(device)}


def run_child(args: argparse.Namespace, **overrides: object) -> dict:
    argv = [sys.executable, __file__, "--child", "--dataroot", args.dataroot, "--threads", str(args.threads),
            "--workers", str(args.workers), "--warmup", str(args.warmup), "--iters", str(args.iters),
            "--gpu_ids", args.gpu_ids, "--test_images", str(args.test_images), "--test_repeats",
            str(args.test_repeats)]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    argv += ["--", *args.extra] if args.extra else []
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"configuration {overrides} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def environment(args: argparse.Namespace) -> dict:
    import torch
    device = "cuda: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() and args.gpu_ids != "-1" else "cpu"
    return {"torch": torch.__version__, "threads": args.threads, "device": device, "cpu": platform.processor()
            or platform.machine(), "python": platform.python_version(), "extra_flags": " ".join(args.extra)}


def table(results: list[dict], env: dict) -> str:
    lines = [f"torch {env['torch']}, {env['threads']} threads, device {env['device']}"
             + (f", flags {env['extra_flags']}" if env["extra_flags"] else ""), "",
             "| mode | crop | batch | s/iter | data s/iter | peak memory (MiB) |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if r["kind"] == "train":
            lines.append(f"| {r['mode']} | {r['crop']} | {r['batch_size']} | {r['sec_per_iter']:.3f} | "
                         f"{r['data_sec']:.4f} | {r['peak_mib']:.0f} |")
    for r in results:
        if r["kind"] == "test":
            lines.append(f"\ntest.py at {r['crop']} px: {r['images_per_sec']:.2f} images/s (median of {r['repeats']} "
                         f"passes over {r['images']} images; best {r['best_images_per_sec']:.2f}), "
                         f"peak memory {r['peak_mib']:.0f} MiB")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--crops", nargs="*", type=int, default=[64, 128, 256],
                        help="training crop sizes (give none to time only test.py)")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--test_crop", type=int, default=256, help="test.py speed at this size (0 = skip)")
    parser.add_argument("--test_images", type=int, default=16, help="images translated for the test speed")
    parser.add_argument("--test_repeats", type=int, default=3,
                        help="timed test.py passes over the images (median reported, best too)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--workers", type=int, default=1, help="data-loader worker processes (--num_threads)")
    parser.add_argument("--gpu_ids", default="-1", help="-1 = CPU, 0 = first GPU")
    parser.add_argument("--dataroot", default=str(REPO / "bench" / "runs" / "speed_data"),
                        help="dataset (generated from the toy generator at 256 px if missing)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "speed.json"), help="JSON output")
    parser.add_argument("--quick", action="store_true", help="one small configuration: a smoke test")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="cut", help=argparse.SUPPRESS)
    parser.add_argument("--crop", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--batch_size", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="train", help=argparse.SUPPRESS)
    parser.add_argument("extra", nargs="*", help="extra train.py/test.py flags after --, e.g. -- --ngf 32")
    args = parser.parse_args()

    if args.child:
        from util.runtime import keep_freed_memory
        keep_freed_memory()  # as train.py and test.py do
        result = worker_train(args) if args.kind == "train" else worker_test(args)
        print(json.dumps(result))
        return
    if not Path(args.dataroot, "trainA").is_dir():
        subprocess.run([sys.executable, str(REPO / "datasets" / "make_toy_dataset.py"), "--out", args.dataroot,
                        "--size", "256", "--n_train", "40", "--n_test", "16"], check=True)
    if args.quick:
        args.modes, args.crops, args.batch_sizes, args.iters, args.warmup = ["cut"], [64], [1], 3, 1
        args.test_crop, args.test_images, args.test_repeats = 64, 4, 1
    results = []
    for crop in args.crops:
        for batch_size in args.batch_sizes:
            for mode in args.modes:
                result = run_child(args, mode=mode, crop=crop, batch_size=batch_size, kind="train")
                print(f"{mode:8s} crop {crop:4d} batch {batch_size}: {result['sec_per_iter']:.3f} s/iter "
                      f"(data {result['data_sec']:.4f}), peak {result['peak_mib']:.0f} MiB", flush=True)
                results.append(result)
    if args.test_crop:
        result = run_child(args, crop=args.test_crop, kind="test")
        print(f"test.py crop {args.test_crop}: {result['images_per_sec']:.2f} images/s "
              f"(best {result['best_images_per_sec']:.2f})", flush=True)
        results.append(result)
    env = environment(args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"environment": env, "results": results}, indent=1))
    print("\n" + table(results, env))


if __name__ == "__main__":
    main()
