"""Checkpoints that survive kills: atomic writes, safe loads, no non-finite weights.

Per tag (``latest``, an epoch number, ``best``) a run directory holds CUT-compatible weight
files ``{tag}_net_{G,D,F}.pth`` (plain state dicts, used by test.py) and, for training
checkpoints, ``{tag}_state.pth``: weights, optimizers, schedulers, counters and RNG states
in ONE file, which is what ``--continue_train`` reads. One file means a kill can never leave
a resumable state whose parts come from different iterations.
"""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import secrets
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

    A crash at any point leaves either the old file or the new one, never a torn file (a kill
    may leave a temp file behind: remove_stale_temp_files clears those at the next start).
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)  # in memory first: a full disk then fails with ENOSPC, not a zip-writer error
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as handle:  # permissions from the umask, like the run's other files
            handle.write(buffer.getbuffer())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path}: {err} -- the previous checkpoint is unchanged; "
                              "free disk space or make the folder writable (--checkpoints_dir), then resume "
                              "with --continue_train") from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # gone already after a successful rename


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a small text file (e.g. train_opt.json, read by test.py) so a kill never leaves it torn."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temp files of writes (checkpoints, train_opt.json) that a kill interrupted; returns them."""
    stale = sorted(Path(folder).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def safe_load(path: str | Path, device: torch.device | str = "cpu") -> Any:
    """torch.load with weights_only=True: tensors and plain containers only, never pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(missing_checkpoint_message(path))
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # a torn or foreign file: zip, pickle and storage errors come in many types
        found = re.search(r"\bGLOBAL ([\w.]+)", str(err))
        if isinstance(err, pickle.UnpicklingError) and found:  # weights_only=True refused a Python object
            raise CheckpointError(f"refusing to load {path}: it holds a pickled Python object ({found.group(1)}), "
                                  "and unpickling it could run code; checkpoints of this project hold only "
                                  "tensors and plain values -- use one written by train.py, or re-save a file "
                                  "you trust as a plain state dict") from err
        # torch's unpickling text suggests turning weights_only off: the wrong fix for a damaged file.
        detail = "unreadable pickle data" if isinstance(err, pickle.UnpicklingError) else str(err).splitlines()[0]
        raise CheckpointError(f"cannot load checkpoint {path}: {detail} -- the file is damaged or not a "
                              "checkpoint; use another one (e.g. --epoch N)") from err


# TAG_net_NAME.pth or TAG_state.pth; a tag may hold "_" itself (iter_500).
_CHECKPOINT_NAME = re.compile(r"^(?P<tag>.+?)_(?P<kind>net_\w+|state)\.pth$")
_LISTED = 10  # most runs or tags named in a message


def _listing(names: list[str]) -> str:
    """"a, b, c" or "a, ..., j (+5 more)": a message stays short when a folder holds hundreds."""
    shown = ", ".join(names[:_LISTED])
    return shown + (f" (+{len(names) - _LISTED} more)" if len(names) > _LISTED else "")


def _tag_order(tag: str) -> tuple:
    """latest and best first, then epochs by number, then iter_N by number."""
    number = tag.removeprefix("iter_")
    return (tag not in ("latest", "best"), tag.startswith("iter_"), int(number) if number.isdigit() else 0, tag)


def saved_tags(run_dir: Path, kind: str) -> list[str]:
    """The tags (latest, best, 5, iter_500...) of run_dir's KIND files (e.g. net_G), in _tag_order."""
    found = (_CHECKPOINT_NAME.match(path.name) for path in run_dir.glob(f"*_{kind}.pth"))
    return sorted({match["tag"] for match in found if match and match["kind"] == kind}, key=_tag_order)


def missing_checkpoint_message(path: Path) -> str:
    """Why `path` is not there, and what is: the run folder's saved epochs, or the runs beside it."""
    run_dir, match = path.parent, _CHECKPOINT_NAME.match(path.name)
    if not run_dir.is_dir():
        runs = sorted(p.name for p in run_dir.parent.glob("*") if p.is_dir() and any(p.glob("*.pth")))
        beside = f"runs there: {_listing(runs)}" if runs else "no runs there"
        return (f"checkpoint not found: {path} -- there is no run folder {run_dir.name} in {run_dir.parent} "
                f"({beside}); check --name and --checkpoints_dir")
    tags = saved_tags(run_dir, match["kind"]) if match else []
    if not tags:
        return (f"checkpoint not found: {path} -- the run folder exists but holds no such file for any epoch; "
                "check --name and --checkpoints_dir, or train the run first")
    return (f"checkpoint not found: {path} -- the run folder exists; epochs saved there: {_listing(tags)}; "
            "pass one with --epoch (load_translator: epoch=)")


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def non_finite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point entries holding NaN or Inf."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
