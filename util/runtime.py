"""Where training runs: device choice, seeding, data-loader workers."""
from __future__ import annotations

import os
import signal

import torch


def select_device(gpu_ids: str | None) -> torch.device:
    """--gpu_ids: None = first GPU if any, else CPU; "-1" = CPU; "N" = cuda:N (error if absent)."""
    if gpu_ids is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    ids = [int(i) for i in str(gpu_ids).split(",") if i.strip() != ""]
    if not ids or ids[0] < 0:
        return torch.device("cpu")
    if len(ids) > 1:
        raise SystemExit(f"error: --gpu_ids {gpu_ids}: one process uses one GPU; for several GPUs launch "
                         "with torchrun --nproc_per_node=N train.py ... (see README, 'Scaling up')")
    if not torch.cuda.is_available() or ids[0] >= torch.cuda.device_count():
        raise SystemExit(f"error: --gpu_ids {gpu_ids}: no such CUDA device here; use --gpu_ids -1 for CPU")
    return torch.device(f"cuda:{ids[0]}")


def _exit_quietly(_signum: int, _frame: object) -> None:
    os._exit(0)


def ignore_interrupts_in_worker(_worker_id: int) -> None:
    """Ctrl-C and SIGTERM may reach the whole process group (terminal, `timeout`, `kill -- -PGID`);
    the main process then saves and exits. Workers ignore Ctrl-C and leave quietly on SIGTERM (which
    multiprocessing also uses to end them): a worker killed by a signal makes PyTorch raise an error in
    the main process at whatever point it is, even mid-iteration."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_quietly)
