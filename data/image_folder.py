"""Listing and loading image files, where bad files are caught and named."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")


class DatasetError(ValueError):
    """A dataset problem the user can fix; the message names the path and the fix."""


def is_image_file(path: str | Path) -> bool:
    return str(path).lower().endswith(IMG_EXTENSIONS)


def list_images(folder: str | Path, max_dataset_size: float = float("inf")) -> list[Path]:
    """Image files under `folder` (recursively, symlinks followed), sorted, at most `max_dataset_size`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"image folder not found: {folder} -- check --dataroot "
                           "(it needs subfolders like trainA/trainB or testA)")
    paths = sorted(Path(root) / name
                   for root, _, names in os.walk(folder, followlinks=True)
                   for name in names if is_image_file(name))
    if not paths:
        raise DatasetError(f"no images in {folder} (looked for {', '.join(IMG_EXTENSIONS)}) -- "
                           "put the domain's images there or fix --dataroot")
    return paths[: int(min(max_dataset_size, len(paths)))]


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer/float images scaled to 8 bits (PIL's convert would clip them)."""
    arr = np.asarray(img, dtype=np.float64)
    peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
    return Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


def load_image(path: str | Path, channels: int) -> Image.Image:
    """Decode an image fully into RGB (channels=3) or L (channels=1).

    Alpha is composited on white, palette and CMYK images are converted, 16-bit images are
    rescaled. A file that cannot be decoded raises DatasetError naming it.
    """
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                img = _to_8bit(img)
            if img.mode == "P":
                img = img.convert("RGBA")
            if img.mode in ("RGBA", "LA"):
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img.convert("RGBA"))
            return img.convert("RGB" if channels == 3 else "L")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DatasetError(f"cannot read image {path}: {err} -- remove or replace the file") from err
