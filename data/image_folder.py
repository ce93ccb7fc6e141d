"""Listing and loading image files, where bad files are caught and named."""
from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
_JPEG_END = b"\xff\xd9"  # the EOI marker a complete JPEG ends with

log = logging.getLogger(__name__)


# Why an image of (width, height) cannot be used with the run's options, or None (data.transforms.size_check).
SizeCheck = Callable[[tuple[int, int]], str | None]


class DatasetError(ValueError):
    """A dataset problem the user can fix; the message names the path and the fix."""

    def __init__(self, message: str):
        # Raised in a DataLoader worker, it comes back to the main process as DatasetError("Caught
        # DatasetError in DataLoader worker process N.\nOriginal Traceback ...: <message>"): keep
        # <message>, so the user sees the same clear error with or without workers.
        if message.startswith(f"Caught {DatasetError.__name__} "):
            message = message.rstrip().rsplit(f"{DatasetError.__name__}: ", 1)[-1]
        super().__init__(message)


def not_a_folder(path: Path) -> str | None:
    """Why `path` cannot be read as a folder ("does not exist", "is a file, not a folder"), or None."""
    if path.is_dir():
        return None
    return "is a file, not a folder" if path.exists() else "does not exist"


def is_image_file(path: str | Path) -> bool:
    return str(path).lower().endswith(IMG_EXTENSIONS)


def list_images(folder: str | Path, max_dataset_size: float = float("inf")) -> list[Path]:
    """Image files under `folder` (recursively, symlinks followed), sorted, at most `max_dataset_size`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"image folder not found: {folder} -- check --dataroot "
                           "(it needs subfolders like trainA/trainB or testA)")
    paths, skipped, visited = [], [], set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in visited:  # a symlink loop, or a second link to a folder already listed
            dirs.clear()
            continue
        visited.add(real)
        for name in names:
            (paths if is_image_file(name) else skipped).append(Path(root) / name)
    if skipped:
        log.warning("skipped %d file(s) without an image extension in %s, e.g. %s (images need one of %s)",
                    len(skipped), folder, skipped[0], ", ".join(IMG_EXTENSIONS))
    if not paths:
        raise DatasetError(f"no images in {folder} (looked for {', '.join(IMG_EXTENSIONS)}) -- "
                           "put the domain's images there or fix --dataroot")
    return sorted(paths)[: int(min(max_dataset_size, len(paths)))]


def _problem(path: Path, size_problem: SizeCheck) -> str | None:
    """Why `path` cannot be trained on, from its header (PNG: all chunks), or None if it looks fine."""
    try:
        with Image.open(path) as img:
            (width, height), fmt = img.size, img.format
            img.verify()
        limit = Image.MAX_IMAGE_PIXELS
        if limit and width * height > limit:
            return (f"{width}x{height} is over PIL's decompression-bomb limit of {limit} pixels: "
                    "downscale the file (training resizes to --load_size anyway)")
        if fmt == "JPEG":
            with open(path, "rb") as handle:
                handle.seek(-len(_JPEG_END), os.SEEK_END)
                complete = handle.read() == _JPEG_END
            if not complete:  # truncated, or legal data after the end marker: decode to know which
                with Image.open(path) as img:
                    img.load()
    except Image.DecompressionBombError as err:
        return f"{err} -- downscale the file"
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        if path.is_symlink() and not path.exists():
            return f"broken symbolic link to {os.readlink(path)}"
        if path.is_file() and path.stat().st_size == 0:
            return "empty file"
        if isinstance(err, UnidentifiedImageError):
            return "not an image (PIL cannot identify the format)"
        return f"cannot decode: {err}"
    return size_problem((width, height))


def check_images(paths: list[Path], *, size_problem: SizeCheck = lambda size: None) -> None:
    """Open every file's header before training starts and raise ONE DatasetError naming every
    file that cannot be used (unreadable, truncated, too large, or of a size `size_problem` refuses),
    rather than failing in a data-loader worker hours later. Threads hide file-system latency."""
    # The filter is set once, here: warnings.catch_warnings swaps process-wide state, so entering and
    # leaving it in each worker thread races and could leak PIL's warning beside our own message.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _problem compares the size itself
        with ThreadPoolExecutor(max_workers=8) as pool:
            problems = [f"  {path}: {problem}"
                        for path, problem in zip(paths, pool.map(lambda p: _problem(p, size_problem), paths)) if problem]
    if problems:
        raise DatasetError(f"{len(problems)} of {len(paths)} image files cannot be used:\n" + "\n".join(problems)
                           + "\nremove or replace these files (or change the options named), then run again")


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer/float images scaled to 8 bits (PIL's convert would clip them)."""
    arr = np.asarray(img, dtype=np.float64)
    peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
    return Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


def convert_image(img: Image.Image, channels: int) -> Image.Image:
    """Any PIL image as RGB (channels=3) or L (channels=1): alpha composited on white, palette and
    CMYK images converted, 16-bit and float images rescaled to 8 bits."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    return img.convert("RGB" if channels == 3 else "L")


def load_image(path: str | Path, channels: int) -> Image.Image:
    """Decode an image fully into RGB (channels=3) or L (channels=1).

    Alpha is composited on white, palette and CMYK images are converted, 16-bit images are
    rescaled. A file that cannot be decoded raises DatasetError naming it.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return convert_image(img, channels)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DatasetError(f"cannot read image {path}: {err} -- remove or replace the file") from err
