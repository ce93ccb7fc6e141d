"""Timing and peak memory inside one bench/speed.py child process, the same for this code and the
reference: seconds per call of a training step or a generator forward, and the process's peaks."""
from __future__ import annotations

import itertools
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import argparse

    import torch as torch_module

Batch = TypeVar("Batch")


def peak_memory_mib() -> float:
    """This process's peak resident memory (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(torch: ModuleType) -> dict:
    """peak_mib: peak RSS (MiB); gpu_peak_mib: peak CUDA memory held by tensors,
    torch.cuda.max_memory_allocated (MiB), None on CPU. Each run is a fresh process, so both peaks
    start from zero."""
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_initialized() else None
    return {"peak_mib": peak_memory_mib(), "gpu_peak_mib": gpu}


def timed_iterations(batches: Iterable[Batch], step: Callable[[Batch], None], *, warmup: int,
                     iters: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (this process, all its threads) per call of step(batch), the wait for the
    batch included, for warmup + iters batches; returns those of the last `iters`. Raises RuntimeError
    if `batches` ends sooner."""
    wall: list[float] = []
    cpu: list[float] = []
    start, start_cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        step(batch)
        end, end_cpu = time.perf_counter(), time.process_time()
        wall.append(end - start)
        cpu.append(end_cpu - start_cpu)
        start, start_cpu = end, end_cpu
        if len(wall) == warmup + iters:
            return wall[warmup:], cpu[warmup:]
    raise RuntimeError(f"the data ran out after {len(wall)} batches; use fewer --warmup/--iters")


def endless(loader: Iterable[Batch], start: Callable[[int], None] | None = None) -> Iterator[Batch]:
    """The loader's batches, epoch after epoch, for ever; start(epoch) (1, 2, ...) before each pass:
    the epoch hook of a sampler or dataset."""
    epoch = 1
    while True:
        if start is not None:
            start(epoch)
        yield from loader
        epoch += 1


def timed_forwards(torch: ModuleType, forward: Callable[[torch_module.Tensor], object], *, size: int,
                   device: torch_module.device | str, dtype: torch_module.dtype,
                   args: argparse.Namespace) -> dict:
    """forward(x) on one random image (1, 3, size, size) in [-1, 1]: the first call's seconds (where
    torch.compile compiles) and the median over `--generator_iters` calls after `--warmup` more."""
    x = (torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device, dtype)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)

    def step(batch: torch_module.Tensor) -> None:
        forward(batch)
        sync()

    start = time.perf_counter()
    step(x)
    first_call = time.perf_counter() - start
    times, cpu = timed_iterations(itertools.repeat(x), step, warmup=args.warmup, iters=args.generator_iters)
    return {"sec_per_image": statistics.median(times), "cpu_sec_per_image": statistics.median(cpu), "times": times,
            "first_call_s": first_call, **peak_memory(torch)}


if __name__ == "__main__":
    sys.exit("bench/timing.py is a library of bench/speed.py, not a command: "
             "python bench/speed.py --help times this code and the reference")
