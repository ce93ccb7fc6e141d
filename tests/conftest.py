"""Shared fixtures: a tiny toy dataset and the argv of a tiny, fast training run.

    def test_something(tiny_train_args):
        argv = tiny_train_args("run", n_epochs=2, no_flip=True)   # -> ["--dataroot", ..., "--no_flip"]
        assert train.main(argv) == 0                               # writes tmp_path/checkpoints/run

Torch runs single-threaded in tests (and in subprocesses they start, via OMP_NUM_THREADS): the
test machine's few cores are shared, and oversubscribed threads make tiny networks many times
slower.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `import train`, `models`, ... from any working directory

os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

TOY_TRAIN, TOY_TEST, TOY_SIZE = 8, 5, 32  # images per domain in the shared toy dataset

# A run that takes about a second per epoch on one busy core: 32 px, tiny networks, 4 images,
# 2 Langevin steps, losses logged every iteration, no visdom, no loader workers.
TINY_FLAGS = {
    "gpu_ids": -1, "display_id": 0, "num_threads": 0, "load_size": 32, "crop_size": 32,
    "ngf": 8, "ndf": 8, "netG": "resnet_4blocks", "netF_nc": 16, "num_patches": 16,
    "max_dataset_size": 4, "n_epochs": 1, "n_epochs_decay": 0, "coop_langevin_steps": 2,
    "print_freq": 1,
}


def as_argv(flags: dict) -> list[str]:
    """{"n_epochs": 2, "no_flip": True, "verbose": False} -> ["--n_epochs", "2", "--no_flip"]."""
    argv: list[str] = []
    for key, value in flags.items():
        if value is True:
            argv.append(f"--{key}")
        elif value is not False and value is not None:
            argv += [f"--{key}", str(value)]
    return argv


def run_dir(argv: list[str]) -> Path:
    """The run folder a train.py argv writes to: CHECKPOINTS_DIR/NAME."""
    return Path(argv[argv.index("--checkpoints_dir") + 1]) / argv[argv.index("--name") + 1]


def load_test_script():
    """test.py as a module, loaded by path: `import test` could find the standard library's test package."""
    spec = importlib.util.spec_from_file_location("coopinit_test_script", ROOT / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_toy_generator():
    # datasets/ is a folder of scripts, not a package.
    spec = importlib.util.spec_from_file_location("make_toy_dataset", ROOT / "datasets" / "make_toy_dataset.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def toy_dataroot(tmp_path_factory) -> Path:
    """The toy horse->zebra set, 32 px: train{A,B} with 8 images each, test{A,B} with 5. Read-only."""
    root = tmp_path_factory.mktemp("toy") / "toy"
    _load_toy_generator().generate(root, size=TOY_SIZE, n_train=TOY_TRAIN, n_test=TOY_TEST, log=lambda _: None)
    return root


@pytest.fixture
def tiny_train_args(tmp_path, toy_dataroot):
    """Builds train.py argv for a tiny run on the toy set, checkpoints in tmp_path/checkpoints.

    tiny_train_args(name="tiny", **flags): `flags` override TINY_FLAGS (True = bare switch,
    False/None = left out; give boolean-valued flags as text: nce_idt="False"). test.py takes
    the same --dataroot, --checkpoints_dir and --name.
    """
    def build(name: str = "tiny", **flags) -> list[str]:
        return as_argv({"dataroot": toy_dataroot, "checkpoints_dir": tmp_path / "checkpoints", "name": name,
                        **TINY_FLAGS, **flags})
    return build


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory, toy_dataroot) -> tuple[Path, str]:
    """A finished tiny training run (plain CUT, one epoch): (checkpoints_dir, name). Read-only."""
    import train
    checkpoints = tmp_path_factory.mktemp("trained")
    argv = as_argv({"dataroot": toy_dataroot, "checkpoints_dir": checkpoints, "name": "tiny", **TINY_FLAGS,
                    "coop_epochs": 0})
    assert train.main(argv) == 0
    return checkpoints, "tiny"
