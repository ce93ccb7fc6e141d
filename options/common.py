"""Small argparse helpers shared by all option sets."""
from __future__ import annotations

import argparse


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
