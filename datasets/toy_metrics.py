"""Translation metrics of the toy horse -> zebra set: did a translation of testA paint stripes inside
each animal, keep its silhouette and keep the background? They use the ground truth that
datasets/make_toy_dataset.py writes for the test split (silhouette masks, background plates).

    from datasets.toy_metrics import toy_translation_metrics
    toy_translation_metrics("datasets/toy", "results/NAME/test_latest/images/fake_B")

`python -m datasets.toy_score` prints them (and FID/KID) at the end of `make demo`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from datasets.make_toy_dataset import LUMA, MASKED_SPLIT

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
# Silhouette metric: colour change (max channel, in [0, 1]) above the image's typical background
# change that marks a pixel as animal, and the IoU at which an image counts as "kept".
SILHOUETTE_THRESHOLD = 0.05
KEPT_IOU = 0.5  # the PASCAL VOC convention for "found the object"


def _box_sum(x: np.ndarray, radius: int) -> np.ndarray:
    """Sum over the (2r+1)^2 window around each pixel of (N, H, W) arrays, zero outside."""
    k = 2 * radius + 1
    c = np.pad(x, ((0, 0), (radius + 1, radius), (radius + 1, radius))).cumsum(1).cumsum(2)
    return c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]


def _interior(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) bool masks eroded by one pixel (3x3): the animal without its edge."""
    return _box_sum(masks.astype(np.float32), 1) > 8.5


def stripe_contrast(images: np.ndarray, masks: np.ndarray, *, radius: int = 2) -> np.ndarray:
    """Per-image stripe score inside the animal: mean local luma contrast.

    With L = luma / 255 and M the mask eroded by one pixel (so the silhouette's edge
    never counts), score = mean over p in M of std{L(q) : q in M, |q - p|_inf <= radius}.
    About 0.3 for the zebras (0.26-0.34 on the default testB), 0.01 for horse coats
    (at most 0.03); NaN where M is empty.
    images: (N, H, W, 3) uint8, masks: (N, H, W) bool.
    """
    luma = images.astype(np.float32) @ LUMA / 255
    inner = _interior(masks).astype(np.float32)
    n = _box_sum(inner, radius)
    mean = _box_sum(inner * luma, radius) / np.maximum(n, 1)
    var = _box_sum(inner * luma**2, radius) / np.maximum(n, 1) - mean**2
    local_std = np.sqrt(np.maximum(var, 0)) * inner
    with np.errstate(invalid="ignore", divide="ignore"):
        return local_std.sum(axis=(1, 2)) / inner.sum(axis=(1, 2))


def background_error(real: np.ndarray, fake: np.ndarray, masks: np.ndarray, *,
                     radius: int = 2) -> np.ndarray:
    """Per-image mean |fake - real| / 255 over the pixels and channels outside the mask
    dilated by `radius` (an edge that moves by a pixel or two is not counted)."""
    outside = _box_sum(masks.astype(np.float32), radius) < 0.5
    diff = np.abs(fake.astype(np.float32) - real.astype(np.float32)).mean(axis=3) / 255
    return (diff * outside).sum(axis=(1, 2)) / np.maximum(outside.sum(axis=(1, 2)), 1)


def silhouette_iou(fake: np.ndarray, background: np.ndarray, masks: np.ndarray, *,
                   threshold: float = SILHOUETTE_THRESHOLD) -> np.ndarray:
    """Per-image intersection over union of the animal's mask and the foreground of `fake`.

    With d = max over channels of |fake - background| / 255, median-filtered over 3x3 (so a
    one-pixel stripe whose colour happens to match the scene leaves no hole, noise is
    damped, and edges stay put), a pixel is foreground where d > threshold + the median
    of d over the pixels at least 4 px from the animal: the image's typical background
    change, which :func:`background_error` reports on its own. The one-pixel ring just
    outside the mask is not counted: its pixels are partly covered by the anti-aliased
    animal. Measured on the default set (seed 0): 1.00 on real testA and testB, 0.98 with
    Gaussian noise of std 10/255, 0.05 on flat grey, 0 on the background plate; painting
    the mask dilated by 2/3/4 px gives 0.87/0.73/0.63.
    fake, background: (N, H, W, 3) uint8; masks: (N, H, W) bool. Returns (N,) in [0, 1].
    """
    d = np.abs(fake.astype(np.float32) - background.astype(np.float32)).max(axis=3) / 255
    d = ndimage.median_filter(d, size=(1, 3, 3), mode="nearest")
    near = _box_sum(masks.astype(np.float32), 3) > 0.5
    typical = np.array([np.median(di[~ni]) if (~ni).any() else 0.0 for di, ni in zip(d, near)])
    foreground = d > threshold + typical[:, None, None]
    counted = ~((_box_sum(masks.astype(np.float32), 1) > 0.5) & ~masks)
    inter = (foreground & masks & counted).sum(axis=(1, 2))
    union = ((foreground | masks) & counted).sum(axis=(1, 2))
    return inter / np.maximum(union, 1)


def _find_image(folder: Path, stem: str, *, fix: str) -> Path:
    for ext in IMAGE_EXTS:
        if (folder / (stem + ext)).is_file():
            return folder / (stem + ext)
    raise FileNotFoundError(f"{folder}/{stem}.png (or .jpg) is missing: {fix}")


def _load(path: Path, mode: str, shape: tuple[int, int] | None) -> np.ndarray:
    with Image.open(path) as im:
        array = np.asarray(im.convert(mode))
    if shape is not None and array.shape[:2] != shape:
        raise ValueError(f"{path} is {array.shape[1]}x{array.shape[0]} but its mask is "
                         f"{shape[1]}x{shape[0]}: translate at the dataset's size "
                         "(test.py --load_size and --crop_size equal to it)")
    return array


def _load_split(root: Path, domain: str, fake_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Masks, images and background plates of one test domain (and the fakes), by mask name."""
    mask_dir = root / f"{MASKED_SPLIT}{domain}_masks"
    mask_paths = sorted(mask_dir.glob("*.png"))
    regenerate = f"regenerate the toy dataset (python datasets/make_toy_dataset.py --out {root})"
    if not mask_paths and (root.parent / mask_dir.name).is_dir():
        raise FileNotFoundError(f"no {mask_dir.name} folder in {root}, but its parent has one: --dataroot is the "
                                f"dataset's root, {root.parent}, not one of its splits")
    if not mask_paths:
        raise FileNotFoundError(f"no .png masks in {mask_dir}: --dataroot must be a toy dataset "
                                f"made by datasets/make_toy_dataset.py (the demo's is datasets/toy); if "
                                f"{root} is an older toy set, {regenerate}; for any other dataset use "
                                "evaluate.py (FID/KID), which needs no masks")
    masks = np.stack([_load(p, "L", None) > 127 for p in mask_paths])
    folders = {"image": root / f"{MASKED_SPLIT}{domain}", "background": root / f"{MASKED_SPLIT}{domain}_background"}
    arrays = {key: np.stack([_load(_find_image(folder, p.stem, fix=regenerate), "RGB", masks.shape[1:])
                             for p in mask_paths]) for key, folder in folders.items()}
    if fake_dir is not None:
        fix = (f"the translation of {folders['image']}/{{stem}} must have its base name; the score needs all "
               f"{len(mask_paths)} test images translated (test.py without --num_test)")
        arrays["fake"] = np.stack([_load(_find_image(fake_dir, p.stem, fix=fix.format(stem=p.name)), "RGB",
                                         masks.shape[1:]) for p in mask_paths])
    empty = [p.name for p, inner in zip(mask_paths, _interior(masks)) if not inner.any()]
    if empty:
        raise ValueError(f"masks with no interior pixels in {mask_dir}: {', '.join(empty[:5])}; {regenerate}")
    return {"mask": masks, **arrays}


def toy_translation_metrics(dataroot: str | os.PathLike, fake_B_dir: str | os.PathLike) -> dict[str, float]:
    """Score a translation of the toy set's testA (fake_B images matched by base name).

    Reads DATAROOT/testA, testA_masks, testA_background, testB and testB_masks. Returns
    n_images and, averaged over the images (arrays: :func:`stripe_contrast`,
    :func:`silhouette_iou`, :func:`background_error`):

    - stripe_strength: stripe_contrast of fake_B inside the animal over the mean of real
      zebras' (testB inside its masks); 1 = as striped as real zebras, about 0.03 = a horse.
      stripe_contrast, stripe_contrast_real_A and stripe_contrast_real_B are the raw values.
    - silhouette_iou (mean), silhouette_iou_min and silhouette_kept (share of images whose
      IoU is at least KEPT_IOU): 1 = the animal's outline is kept exactly.
    - background_error: mean abs change outside the animal in [0, 1]; 0 = kept.

    FileNotFoundError names a missing folder or image, ValueError an image of the wrong size.
    """
    root, fake_dir = Path(dataroot), Path(fake_B_dir)
    a = _load_split(root, "A", fake_dir)
    b = _load_split(root, "B")
    fake_stripes = stripe_contrast(a["fake"], a["mask"])
    zebra_stripes = float(stripe_contrast(b["image"], b["mask"]).mean())
    iou = silhouette_iou(a["fake"], a["background"], a["mask"])
    return {
        "n_images": len(a["mask"]),
        "stripe_strength": float(fake_stripes.mean()) / zebra_stripes,
        "stripe_contrast": float(fake_stripes.mean()),
        "stripe_contrast_real_A": float(stripe_contrast(a["image"], a["mask"]).mean()),
        "stripe_contrast_real_B": zebra_stripes,
        "silhouette_iou": float(iou.mean()),
        "silhouette_iou_min": float(iou.min()),
        "silhouette_kept": float((iou >= KEPT_IOU).mean()),
        "background_error": float(background_error(a["image"], a["fake"], a["mask"]).mean()),
    }
