"""Datasets found by --dataset_mode, and the loader that feeds training and testing.

A dataset module `data/<mode>_dataset.py` defines a class named `<Mode>Dataset` with a
`modify_commandline_options(parser, is_train)` static method, like in CUT.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Callable

from torch.utils.data import Dataset

_MODES = ("unaligned", "single")


def available() -> tuple[str, ...]:
    return _MODES


def find_dataset_using_name(mode: str) -> type[Dataset]:
    if mode not in _MODES:
        raise ValueError(f"unknown --dataset_mode {mode!r}; choose one of {', '.join(_MODES)}")
    module = importlib.import_module(f"data.{mode}_dataset")
    return getattr(module, f"{mode.capitalize()}Dataset")


def get_option_setter(mode: str) -> Callable[[argparse.ArgumentParser, bool], argparse.ArgumentParser]:
    return find_dataset_using_name(mode).modify_commandline_options


def create_dataset(opt: argparse.Namespace) -> Dataset:
    """The dataset --dataset_mode names. Testing with unaligned, CUT's test.py default, reads
    single: PHASEA translated one by one, test.py shows PHASEB beside it as CUT's page does."""
    testing_unaligned = not getattr(opt, "isTrain", True) and opt.dataset_mode == "unaligned"
    return find_dataset_using_name("single" if testing_unaligned else opt.dataset_mode)(opt)
