"""Checkpoints that survive kills: atomic writes, safe loads, no non-finite weights.

Per tag (``latest``, an epoch number, ``best``) a run directory holds CUT-compatible weight
files ``{tag}_net_{G,D,F}.pth`` (plain state dicts, used by test.py) and, for training
checkpoints, ``{tag}_state.pth``: weights, optimizers, schedulers, counters and RNG states
in ONE file, which is what ``--continue_train`` reads. One file means a kill can never leave
a resumable state whose parts come from different iterations.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the file and the fix."""


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, fsync, rename over `path`, fsync the folder.

    A crash at any point leaves either the old file or the new one, never a torn file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path}: {err} -- check that the folder is "
                              "writable (--checkpoints_dir)") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(f"cannot write checkpoint {path}: {err} -- the previous checkpoint is "
                              "intact; free disk space or fix permissions, then resume") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_load(path: str | Path, device: torch.device | str = "cpu") -> Any:
    """torch.load with weights_only=True: tensors and plain containers only, never pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise CheckpointError(f"cannot load checkpoint {path}: {err}") from err


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point entries holding NaN or Inf."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
