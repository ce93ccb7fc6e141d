"""Where training runs: device choice, seeding, data-loader workers."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

import torch

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt() parameters (malloc.h)


def select_device(gpu_ids: str | None) -> torch.device:
    """--gpu_ids: None = first GPU if any, else CPU; "-1" = CPU; "N" = cuda:N (error if absent)."""
    if gpu_ids is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    ids = [int(i) for i in str(gpu_ids).split(",") if i.strip() != ""]
    if not ids or ids[0] < 0:
        return torch.device("cpu")
    if len(ids) > 1:
        raise SystemExit(f"error: --gpu_ids {gpu_ids}: one process uses one GPU; for several GPUs launch "
                         "with torchrun --nproc_per_node=N train.py ... (see docs/scaling_up.md)")
    if not torch.cuda.is_available() or ids[0] >= torch.cuda.device_count():
        raise SystemExit(f"error: --gpu_ids {gpu_ids}: no such CUDA device here; use --gpu_ids -1 for CPU")
    return torch.device(f"cuda:{ids[0]}")


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the kernel.

    By default every activation above 32 MiB is a fresh mmap (and smaller freed blocks are trimmed),
    so each forward pass page-faults its large tensors in again: measured 28 -> 9 ms for one
    anti-aliased downsampling at 256 px, and test.py 1.11 -> 1.28 images/s (docs/results.md, "Speed").
    Peak memory is unchanged; the process simply keeps its peak. No-op off glibc, or when the
    environment variable COOPINIT_MALLOC_TRIM=1 asks for the default behaviour. Returns whether
    the setting took effect."""
    if os.environ.get("COOPINIT_MALLOC_TRIM") == "1":
        return False
    path = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(path).mallopt
        mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        # Trim only when over 2 GiB (the largest int) lies free at the top of the heap.
        return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS, Windows)
        return False


def _exit_quietly(_signum: int, _frame: object) -> None:
    os._exit(0)


def ignore_interrupts_in_worker(_worker_id: int) -> None:
    """Ctrl-C and SIGTERM may reach the whole process group (terminal, `timeout`, `kill -- -PGID`);
    the main process then saves and exits. Workers ignore Ctrl-C and leave quietly on SIGTERM (which
    multiprocessing also uses to end them): a worker killed by a signal makes PyTorch raise an error in
    the main process at whatever point it is, even mid-iteration."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)
