"""Image preprocessing, as CUT's --preprocess modes define it, with explicit randomness.

Randomness (crop position, flip) comes from a numpy Generator passed in, so the same
(seed, epoch, index) gives the same tensor in any worker and after a resume.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.image_folder import DatasetError, SizeCheck
from models.networks import min_image_side

BICUBIC = Image.Resampling.BICUBIC


def _scale_width_size(size: tuple[int, int], target_width: int, crop_size: int) -> tuple[int, int]:
    """Width to `target_width`, keeping the aspect ratio, but height never below `crop_size`."""
    ow, oh = size
    if ow == target_width and oh >= crop_size:
        return size
    return target_width, int(max(target_width * oh / ow, crop_size))


def _multiple_size(size: tuple[int, int], base: int = 4) -> tuple[int, int]:
    """Both sides rounded to a multiple of `base`, so down- and up-sampling give back the size."""
    ow, oh = size
    return max(base, round(ow / base) * base), max(base, round(oh / base) * base)


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img if img.size == size else img.resize(size, BICUBIC)


def _scale_width(img: Image.Image, target_width: int, crop_size: int) -> Image.Image:
    return _resize(img, _scale_width_size(img.size, target_width, crop_size))


def _make_multiple(img: Image.Image, base: int = 4) -> Image.Image:
    return _resize(img, _multiple_size(img.size, base))


def _crop(img: Image.Image, size: int, rng: np.random.Generator | None, path: str | Path) -> Image.Image:
    w, h = img.size
    if w < size or h < size:
        raise DatasetError(f"image {path} is {w}x{h} after preprocessing, smaller than --crop_size {size}: "
                           "use --preprocess resize_and_crop or scale_width_and_crop, a larger "
                           "--load_size, or a smaller --crop_size")
    if rng is None:  # testing: centre crop
        x, y = (w - size) // 2, (h - size) // 2
    else:
        x, y = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
    return img.crop((x, y, x + size, y + size))


def to_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    """PIL image or uint8 array (H, W[, C]) -> float tensor (C, H, W) in [-1, 1]."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.transpose(2, 0, 1).copy()).mul_(2.0 / 255.0).sub_(1.0)


# Modes whose output size depends on the image's own size.
VARIABLE_SIZE_MODES = {"none": "keeps each image's size", "scale_width": "keeps each image's aspect ratio"}


def output_size(size: tuple[int, int], opt: argparse.Namespace) -> tuple[int, int]:
    """(width, height) that `preprocess` gives an image of `size` in VARIABLE_SIZE_MODES (testing
    keeps "none" images' exact size)."""
    if opt.preprocess == "none":
        return _multiple_size(size) if getattr(opt, "isTrain", True) else size
    return _scale_width_size(size, opt.load_size, opt.crop_size)


def check_batchable(paths: list[Path], opt: argparse.Namespace) -> None:
    """A batch is one tensor: with --batch_size > 1, one folder's images must come out the same size.

    Reads image headers only, and only in VARIABLE_SIZE_MODES; stops at the second size found.
    Raises DatasetError naming two files, their sizes, --preprocess and --batch_size."""
    if opt.batch_size == 1 or opt.preprocess not in VARIABLE_SIZE_MODES:
        return
    first: dict[tuple[int, int], Path] = {}
    for path in paths:
        with Image.open(path) as img:
            first.setdefault(output_size(img.size, opt), path)
        if len(first) > 1:
            (size_a, path_a), (size_b, path_b) = first.items()
            raise DatasetError(
                f"--batch_size {opt.batch_size} stacks images into one tensor, but --preprocess {opt.preprocess} "
                f"{VARIABLE_SIZE_MODES[opt.preprocess]}: {path_a} becomes {size_a[0]}x{size_a[1]}, {path_b} "
                f"{size_b[0]}x{size_b[1]} -- use --batch_size 1, or a --preprocess mode that gives every image "
                "the same size (resize_and_crop, crop or scale_width_and_crop)")


def size_check(opt: argparse.Namespace, *, discriminator: bool) -> SizeCheck:
    """check_images' test of an image file's (width, height) under `opt`: --preprocess crop needs
    sides of --crop_size; in VARIABLE_SIZE_MODES the preprocessed image needs the smallest side the
    networks take (G, and D with `discriminator`; models.networks.min_image_side). The other modes
    resize to --crop_size, which option validation checks."""
    side, source = min_image_side(opt, discriminator=discriminator)
    fixes = {"none": "upscale the file, or use --preprocess resize_and_crop",
             "scale_width": f"raise --load_size and --crop_size to {side} or more (scale_width gives the width "
                            "--load_size and the height at least --crop_size)"}

    def problem(size: tuple[int, int]) -> str | None:
        width, height = size
        if opt.preprocess == "crop" and min(size) < opt.crop_size:
            return (f"{width}x{height} is smaller than --crop_size {opt.crop_size} with --preprocess crop: "
                    "use --preprocess resize_and_crop or a smaller --crop_size")
        if opt.preprocess in VARIABLE_SIZE_MODES and min(out := output_size(size, opt)) < side:
            becomes = "stays" if out == size else f"becomes {out[0]}x{out[1]}"
            return (f"{width}x{height} {becomes} with --preprocess {opt.preprocess}, smaller than "
                    f"{side} px, the smallest side {source} takes: {fixes[opt.preprocess]}")
        return None
    return problem


def preprocess(img: Image.Image, opt: argparse.Namespace, *, rng: np.random.Generator | None,
               path: str | Path = "<image>") -> torch.Tensor:
    """Apply --preprocess and --no_flip to one image; rng=None means deterministic (testing)."""
    mode = opt.preprocess
    if mode == "resize_and_crop":
        img = img.resize((opt.load_size, opt.load_size), BICUBIC)
    elif mode.startswith("scale_width"):
        img = _scale_width(img, opt.load_size, opt.crop_size)
    if mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
        img = _crop(img, opt.crop_size, rng, path)
    elif mode == "none" and rng is not None:  # testing keeps the size: the translator pads and crops back
        img = _make_multiple(img)
    if rng is not None and not opt.no_flip and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return to_tensor(img)
