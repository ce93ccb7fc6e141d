"""Inception features of images (tensors or folders) and FID/KID between two feature sets.

Preprocessing follows pytorch-fid: RGB in [-1, 1], bilinear resize to 299x299 with
align_corners=False (no antialiasing), whatever the source size. The statistics come from
torch-fidelity: FID (its eigenvalue form; see frechet_distance) and KID (unbiased
polynomial-kernel MMD over random subsets).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric
from tqdm import tqdm

from data.image_folder import IMG_EXTENSIONS
from data.image_folder import load_image as load_pil_image
from metrics.inception import FEATURE_DIM, INPUT_SIZE, WEIGHTS_SHA256, load_inception

KID_MAX_SUBSET = 1000  # torch-fidelity's default subset size
MIN_IMAGES = 2  # a covariance (FID) and an unbiased MMD (KID) need two samples per set
# Bump when preprocessing changes, so cached features computed the old way are not reused.
_PREPROCESS_VERSION = "rgb[-1,1]-bilinear299-v1"


def list_images(folder: str | Path, *, max_images: int | None = None) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; other files are ignored."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder {folder} does not exist: check the path")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder: pass a folder of images")
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
    if not paths:
        raise ValueError(f"image folder {folder} has no images (looked for {', '.join(IMG_EXTENSIONS)})")
    return paths[:max_images]


def load_image(path: Path) -> torch.Tensor:
    """(3, H, W) float tensor in [-1, 1], decoded as the training data is (RGB; bad files named)."""
    rgb = np.array(load_pil_image(path, channels=3))  # writable copy for torch
    return torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1.0


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) read from the header only."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError) as err:
        raise ValueError(f"corrupt or unreadable image {path}: {err}. Delete or replace the file.") from err


def _resize(images: torch.Tensor) -> torch.Tensor:
    if images.shape[-2:] == (INPUT_SIZE, INPUT_SIZE):
        return images
    return F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


class InceptionFeatures:
    """2048-d FID Inception features; loads and verifies the network once."""

    def __init__(self, device: torch.device | str = "cpu", batch_size: int = 50, *, progress: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.progress = progress
        self.model = load_inception(self.device)

    @torch.inference_mode()
    def _embed(self, batch: torch.Tensor) -> np.ndarray:
        return self.model(batch.to(self.device)).double().cpu().numpy()

    def from_tensors(self, images: torch.Tensor) -> np.ndarray:
        """Features of (N, C, H, W) images in [-1, 1] (C is 1 or 3) -> (N, 2048) float64."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape (N, 1 or 3, H, W), got {tuple(images.shape)}")
        if images.numel() and (images.min() < -1.001 or images.max() > 1.001):
            raise ValueError(f"expected pixel values in [-1, 1], got [{images.min():.3g}, {images.max():.3g}]: "
                             "scale uint8 images with x / 127.5 - 1")
        chunks = [np.empty((0, FEATURE_DIM))]
        for start in tqdm(range(0, len(images), self.batch_size), disable=not self.progress, unit="batch",
                          desc="Inception features"):
            # Move first, so the resize runs on the device.
            batch = images[start:start + self.batch_size].to(self.device, torch.float32)
            chunks.append(self._embed(_resize(batch.expand(-1, 3, -1, -1))))
        return np.concatenate(chunks)

    def from_folder(self, folder: str | Path, *, max_images: int | None = None,
                    cache_dir: str | Path | None = None) -> np.ndarray:
        """Features of the images in ``folder`` (sorted by name, the first ``max_images``).

        With ``cache_dir``, features are stored there and reused while the folder's files
        (names, sizes, mtimes) and the weights are unchanged.
        """
        paths = list_images(folder, max_images=max_images)
        cache_file = None if cache_dir is None else Path(cache_dir) / f"{Path(folder).name}-{_cache_key(paths)}.npz"
        if cache_file is not None:
            cached = _read_cache(cache_file, len(paths))
            if cached is not None:
                return cached
        chunks = [np.empty((0, FEATURE_DIM))]
        with tqdm(total=len(paths), disable=not self.progress, unit="img",
                  desc=f"Inception {Path(folder).name}") as bar:
            for start in range(0, len(paths), self.batch_size):
                batch_paths = paths[start:start + self.batch_size]
                # Resize one by one: a folder may mix image sizes.
                batch = torch.cat([_resize(load_image(p)[None]) for p in batch_paths])
                chunks.append(self._embed(batch))
                bar.update(len(batch_paths))
        features = np.concatenate(chunks)
        if cache_file is not None:
            _write_cache(cache_file, features)
        return features


def _cache_key(paths: list[Path]) -> str:
    files = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    blob = json.dumps({"weights": WEIGHTS_SHA256, "preprocess": _PREPROCESS_VERSION, "files": files})
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _read_cache(path: Path, n_images: int) -> np.ndarray | None:
    """Cached features, or None when absent or unreadable (then they are recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            features = data["features"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return features if features.shape == (n_images, FEATURE_DIM) else None


def _write_cache(path: Path, features: np.ndarray) -> None:
    """Write via a temporary file and rename, so a reader never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, features=features)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def resolve_kid_subset_size(n_real: int, n_fake: int, requested: int | None = None) -> int:
    """KID subset size: ``requested``, or min(1000, n_real, n_fake); raises if the sets are too small."""
    size = min(KID_MAX_SUBSET, n_real, n_fake) if requested is None else requested
    if size < MIN_IMAGES:
        raise ValueError(f"KID needs a subset size of at least {MIN_IMAGES}, so at least {MIN_IMAGES} images in "
                         f"each set; got subset size {size} ({n_real} real, {n_fake} fake images)")
    if size > min(n_real, n_fake):
        raise ValueError(f"KID subset size {size} needs at least {size} images in each set, got {n_real} real "
                         f"and {n_fake} fake: add images or lower kid_subset_size (--kid_subset_size) "
                         f"to at most {min(n_real, n_fake)}")
    return size


def _check_features(features: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[1] != FEATURE_DIM:
        raise ValueError(f"{name} features must have shape (N, {FEATURE_DIM}), got {features.shape}")
    if len(features) < MIN_IMAGES:
        raise ValueError(f"FID needs at least {MIN_IMAGES} {name} images (a covariance), got {len(features)}")
    return features


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """torch-fidelity's FID, computed in the subspace that holds both sets' spread and their mean gap.

    FID is invariant to rotations and that subspace holds all of it, so the value is exact up to
    rounding; with fewer images than feature dimensions the eigenproblem shrinks from 2048^2 to at
    most (n_real + n_fake + 1)^2 (200 vs 200 images on CPU: about 0.6 s instead of 20 s).
    """
    spread = np.concatenate([real - real.mean(axis=0), fake - fake.mean(axis=0),
                             (real.mean(axis=0) - fake.mean(axis=0))[None]])
    if len(spread) < spread.shape[1]:
        basis, _ = np.linalg.qr(spread.T)  # orthonormal columns whose span contains every row of spread
        real, fake = real @ basis, fake @ basis
    stats = [fid_features_to_statistics(torch.from_numpy(np.ascontiguousarray(x))) for x in (real, fake)]
    return fid_statistics_to_metric(*stats, verbose=False)[KEY_METRIC_FID]


def fid_kid(real_features: np.ndarray, fake_features: np.ndarray, *, kid_subsets: int = 100,
            kid_subset_size: int | None = None, seed: int = 0) -> dict:
    """FID and KID (mean and std over ``kid_subsets`` random subsets) between two feature sets.

    ``kid_subset_size`` defaults to min(1000, n_real, n_fake). When it equals both set
    sizes every subset is the whole set, so ``kid_std`` is 0.
    """
    real = _check_features(real_features, "real")
    fake = _check_features(fake_features, "fake")
    subset_size = resolve_kid_subset_size(len(real), len(fake), kid_subset_size)
    if kid_subsets < 1:
        raise ValueError(f"kid_subsets must be at least 1, got {kid_subsets}")
    kid = kid_features_to_metric(torch.from_numpy(real), torch.from_numpy(fake), kid_subsets=kid_subsets,
                                 kid_subset_size=subset_size, rng_seed=seed, verbose=False)
    return {"fid": frechet_distance(real, fake), "kid_mean": kid[KEY_METRIC_KID_MEAN],
            "kid_std": kid[KEY_METRIC_KID_STD], "n_real": len(real), "n_fake": len(fake),
            "kid_subset_size": subset_size}
