"""Network tensors to image files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, rounding as the inverse of data.transforms.to_tensor."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def save_png(pixels: np.ndarray, path: str | Path) -> None:
    """Save one (H, W, C) uint8 image; C=1 is written as grayscale.

    zlib level 1: on 256 px photos 3.7x faster than PIL's default 6 (5.5 vs 20 ms) for files 6 %
    larger; the pixels are the same (PNG is lossless)."""
    Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(path, compress_level=1)


def stretch(pixels: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """CycleGAN's --aspect_ratio: (H, W, C) uint8 resized (bicubic) to height / width = aspect_ratio * H / W,
    by lengthening one side: the height when aspect_ratio > 1, the width when < 1 (for square images
    the size CycleGAN's save_image gives). aspect_ratio 1 returns `pixels` unchanged."""
    if aspect_ratio == 1.0:
        return pixels
    height, width, channels = pixels.shape
    size = (width, int(height * aspect_ratio)) if aspect_ratio > 1.0 else (int(width / aspect_ratio), height)
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).resize(size, Image.Resampling.BICUBIC)
    return np.asarray(image).reshape(size[1], size[0], channels)
