"""Small argparse helpers shared by all option sets."""
from __future__ import annotations

import argparse
import os


def str2bool(value: str | bool) -> bool:
    """CUT-style boolean flag value: `--flag`, `--flag True`, `--flag no`..."""
    if isinstance(value, bool):
        return value
    lowered = value.lower()
    if lowered in ("yes", "true", "t", "y", "1", "on"):
        return True
    if lowered in ("no", "false", "f", "n", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"boolean value expected, got {value!r}")


def count_or_inf(value: str | float) -> int | float:
    """--max_dataset_size: a whole number, or "inf" (no limit; how train_opt.json records the default)."""
    if str(value).strip().lower() in ("inf", "infinity"):
        return float("inf")
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number or inf expected, got {value!r}") from None


def available_cpus() -> int:
    """CPU cores this process may run on: its affinity mask where the OS has one (what torch's
    DataLoader compares --num_threads with before warning of "excessive worker creation")."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
