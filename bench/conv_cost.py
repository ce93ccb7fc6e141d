"""Why training is not much faster than the reference on a CPU: where an iteration's time goes, and
what one residual-block convolution costs by each algorithm and precision.

    python bench/conv_cost.py                  # 1 thread; about 2 minutes on a quiet core
    python bench/conv_cost.py --crops 128 --threads 2

- Profile: torch.profiler over `--iters` CUT training iterations of this code (defaults, float32,
  after one warm-up) at each crop, with Winograd off (COOPINIT_WINOGRAD=0 semantics, via
  winograd.disabled) so every convolution shows up as one aten convolution op; reported: the share
  of the iteration's self CPU time in convolution ops (forward and backward).
- Convolution: one 3x3, 256 -> 256 channel convolution, batch 1, forward + backward (the gradients
  with respect to input and weights), on the residual blocks' map size at each crop (crop / 4):
  direct float32 (oneDNN), Winograd float32 (models/networks/winograd.py) and direct bfloat16;
  median seconds over `--repeats` and the GFLOPS of the direct arithmetic (3 x 2 x 9 x 256^2 x H x W
  per forward + backward) that each reaches.

Prints a markdown table, and writes it with the CPU's name and flags to --out (JSON).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from models.networks import winograd  # noqa: E402

CONV_OPS = ("conv",)  # aten::convolution, aten::mkldnn_convolution, aten::convolution_backward, ...


def conv_share(crop: int, *, dataroot: str, iters: int) -> dict:
    """Share of self CPU time in convolution ops over `iters` CUT training iterations at `crop` px."""
    import train
    from options.train_options import TrainOptions

    with tempfile.TemporaryDirectory() as tmp, winograd.disabled():
        argv = ["--dataroot", dataroot, "--name", "profile", "--checkpoints_dir", tmp, "--crop_size", str(crop),
                "--load_size", str(crop), "--num_threads", "0", "--display_id", "0", "--no_html",
                "--coop_epochs", "0", "--gpu_ids", "-1", "--seed", "0"]
        options = TrainOptions()
        trainer = train.Trainer(options.parse(argv), options)
        batches = iter(trainer.loader)
        trainer.model.set_input(next(batches))
        trainer.model.optimize(0)  # warm-up: oneDNN picks its kernels
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            for iteration in range(1, iters + 1):
                trainer.model.set_input(next(batches))
                trainer.model.optimize(iteration)
    events = profile.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events if any(op in e.key for op in CONV_OPS))
    return {"crop": crop, "conv_share": conv / total, "sec_per_iter": total / 1e6 / iters}


def conv_seconds(size: int, *, dtype: torch.dtype, use_winograd: bool, repeats: int) -> float:
    """Median seconds of forward + backward of one 3x3 256 -> 256 convolution on a size x size map."""
    torch.manual_seed(0)
    conv = winograd.WinogradConv2d(256, 256, 3, padding=1).to(dtype)
    x = torch.randn(1, 256, size, size, dtype=dtype, requires_grad=True)
    times = []
    with winograd.disabled() if not use_winograd else torch.enable_grad():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            conv(x).sum().backward()
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", nargs="+", type=int, default=[128, 256], help="training crop sizes (px)")
    parser.add_argument("--iters", type=int, default=2, help="profiled training iterations per crop")
    parser.add_argument("--repeats", type=int, default=5, help="timed convolutions per case (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--dataroot", default=str(REPO / "bench" / "runs" / "speed_data"),
                        help="training images (bench/speed.py generates this toy set)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "conv_cost.json"), help="JSON output")
    args = parser.parse_args(argv)
    if not Path(args.dataroot, "trainA").is_dir():
        raise SystemExit(f"error: --dataroot {args.dataroot} has no trainA: run bench/speed.py once (it "
                         "generates the toy set there) or pass a dataset")
    torch.set_num_threads(args.threads)
    info = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    fields = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in info if ":" in line}
    flags = fields.get("flags", "").split()
    cpu = {"processor": fields.get("model name", platform.machine()), "threads": args.threads,
           "avx2": "avx2" in flags, "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
           "amx_bf16": "amx_bf16" in flags, "torch": torch.__version__}
    lines = ["| crop | residual-block map | convolutions' share of an iteration (direct) | direct float32 "
             "| Winograd float32 | direct bfloat16 |", "| --- | --- | --- | --- | --- | --- |"]
    rows = []
    for crop in args.crops:
        share = conv_share(crop, dataroot=args.dataroot, iters=args.iters)
        size = crop // 4
        flops = 3 * 2 * 9 * 256 * 256 * size * size
        cases = {"direct_float32": (torch.float32, False), "winograd_float32": (torch.float32, True),
                 "direct_bfloat16": (torch.bfloat16, False)}
        seconds = {name: conv_seconds(size, dtype=dtype, use_winograd=use, repeats=args.repeats)
                   for name, (dtype, use) in cases.items()}
        rows.append({**share, "map": size, "conv_seconds": seconds})
        cells = [f"{seconds[name] * 1e3:.1f} ms ({flops / seconds[name] / 1e9:.0f} GFLOPS)" for name in cases]
        lines.append(f"| {crop} | {size}x{size}, 256 ch | {share['conv_share']:.0%} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    report = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"cpu": cpu, "command": " ".join(sys.argv), "rows": rows}, indent=1))
    print(f"\n{json.dumps(cpu)}\n\n{report}")


if __name__ == "__main__":
    main()
