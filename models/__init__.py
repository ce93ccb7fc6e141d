"""Models found by --model, like in CUT: `models/<name>_model.py` defines `<Name>Model`."""
from __future__ import annotations

import argparse
import importlib
from typing import Callable

import torch

_MODELS = {"cut": "CUTModel"}


def available() -> tuple[str, ...]:
    return tuple(_MODELS)


def find_model_using_name(name: str) -> type:
    if name not in _MODELS:
        raise ValueError(f"unknown --model {name!r}; choose one of {', '.join(_MODELS)}")
    return getattr(importlib.import_module(f"models.{name}_model"), _MODELS[name])


def get_option_setter(name: str) -> Callable[[argparse.ArgumentParser, bool], argparse.ArgumentParser]:
    return find_model_using_name(name).modify_commandline_options


def create_model(opt: argparse.Namespace, device: torch.device):
    return find_model_using_name(opt.model)(opt, device)


def __getattr__(name: str):
    # `from models import load_translator` without importing the options at package import time
    # (options import this package's registry).
    if name == "load_translator":
        from models.translator import load_translator
        return load_translator
    raise AttributeError(f"module 'models' has no attribute {name!r}")
