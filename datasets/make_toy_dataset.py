#!/usr/bin/env python3
"""Embedded toy dataset for CoopInit-CUT: horse silhouettes (A) -> zebras (B), no download.

Layout (CycleGAN/CUT unaligned, read by ``--dataset_mode unaligned``)::

    OUT/trainA, OUT/trainB, OUT/testA, OUT/testB   RGB PNGs, NNNN.png
    OUT/testA_masks, OUT/testB_masks                silhouette masks (L, 255 = animal),
                                                    same base name as the image
    OUT/testA_background, OUT/testB_background      the same scene without the animal (RGB)
    OUT/manifest.json                               the arguments; written last

Both domains draw the same family of animals (random pose, size, position) on the same
family of smooth backgrounds, each image from its own random stream, so A and B are
unpaired. A animals have smooth horse coats; B animals are covered in black/white
stripes that follow the body (across the trunk, rings round legs, neck and tail).
A correct translator adds stripes inside the animal and keeps its shape and the
background; :func:`datasets.toy_metrics.toy_translation_metrics` measures exactly that.

Run ``python datasets/make_toy_dataset.py --help``.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_OUT = Path(__file__).resolve().parent / "toy"
FORMAT = "coopinit-cut-toy"
VERSION = 4  # bump whenever the images change for the same arguments: old sets regenerate
SPLITS = ("train", "test")
DOMAINS = ("A", "B")
MASKED_SPLIT = "test"  # the split that also gets masks and background plates
EXTRAS = ("masks", "background")
MANIFEST = "manifest.json"
IMAGE_NAME = re.compile(r"^\d+\.png$")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601

# Horse coats (RGB in [0, 1]): body colour, and the colour of mane, tail and lower legs.
COATS = (
    ((0.45, 0.26, 0.13), (0.10, 0.08, 0.07)),  # bay
    ((0.62, 0.33, 0.15), (0.50, 0.25, 0.11)),  # chestnut
    ((0.28, 0.17, 0.10), (0.10, 0.07, 0.06)),  # dark brown
    ((0.13, 0.12, 0.12), (0.08, 0.07, 0.07)),  # black
    ((0.60, 0.60, 0.60), (0.40, 0.40, 0.42)),  # grey
    ((0.88, 0.86, 0.82), (0.78, 0.76, 0.72)),  # white
    ((0.82, 0.66, 0.38), (0.95, 0.92, 0.82)),  # palomino
)
MIN_COAT_CONTRAST = 0.15  # luma difference to the background, so the horse stays visible


@dataclass(frozen=True)
class Capsule:
    """A segment start -> end swept by a radius that tapers linearly from r0 to r1."""

    start: tuple[float, float]
    end: tuple[float, float]
    r0: float
    r1: float
    points: bool = False  # mane, tail, lower leg: takes the coat's points colour
    trunk: bool = False  # stripes across the body axis, bent; others get plain bands


# ---------------------------------------------------------------- drawing


def _polar(origin: tuple[float, float], length: float, angle: float) -> tuple[float, float]:
    """End of a segment from origin; angle in radians, 0 = +x (head side), +pi/2 = down."""
    return (origin[0] + length * np.cos(angle), origin[1] + length * np.sin(angle))


def _sample_animal(rng: np.random.Generator) -> list[Capsule]:
    """One horse-shaped body in canonical units (about 1 long, y down, facing +x)."""
    u = rng.uniform
    half_len, half_h = u(0.27, 0.32), u(0.13, 0.15)
    parts = [Capsule((-half_len + half_h, 0.0), (half_len - half_h, 0.0),
                     half_h * u(1.0, 1.1), half_h * u(0.9, 1.0), trunk=True)]

    neck_base = (half_len * 0.72, -half_h * 0.35)
    neck_angle = -np.radians(u(50, 75))
    neck_top = _polar(neck_base, u(0.20, 0.27), neck_angle)
    parts.append(Capsule(neck_base, neck_top, u(0.09, 0.10), 0.065))
    back = neck_angle - np.pi / 2  # the neck's upper edge carries the mane
    mane_from = _polar(neck_base, 0.05, back)
    parts.append(Capsule(mane_from, _polar(neck_top, 0.03, back), 0.035, 0.025, points=True))

    muzzle = _polar(neck_top, u(0.17, 0.22), np.radians(u(25, 70)))
    parts.append(Capsule(neck_top, muzzle, 0.065, 0.045))
    ear_base = _polar(neck_top, 0.02, np.pi)
    parts.append(Capsule(ear_base, _polar(ear_base, 0.08, -np.radians(u(95, 125))), 0.03, 0.012))

    hip_y = half_h * 0.45
    legs = ((half_len * 0.62, -1.0), (half_len * 0.50, -1.0),  # front: knees bend back
            (-half_len * 0.62, 1.0), (-half_len * 0.76, 1.0))  # hind: hocks bend forward
    for x, knee_sign in legs:
        top = (x + u(-0.02, 0.02), hip_y)
        swing = np.radians(u(-28, 28))  # from vertical, positive = forward
        knee = _polar(top, u(0.17, 0.20), np.pi / 2 - swing)
        hoof = _polar(knee, u(0.17, 0.20), np.pi / 2 - swing - knee_sign * np.radians(u(0, 35)))
        parts.append(Capsule(top, knee, 0.065, 0.045))
        parts.append(Capsule(knee, hoof, 0.042, 0.036, points=True))

    tail_base = (-half_len + half_h * 0.3, -half_h * 0.6)
    tail_mid = _polar(tail_base, u(0.10, 0.14), np.pi - np.radians(u(20, 60)))
    tail_end = _polar(tail_mid, u(0.12, 0.18), np.pi - np.radians(u(65, 100)))
    parts.append(Capsule(tail_base, tail_mid, 0.045, 0.04, points=True))
    parts.append(Capsule(tail_mid, tail_end, 0.04, 0.03, points=True))
    return parts


@dataclass(frozen=True)
class Placement:
    """image_xy = offset + scale * R(angle) @ diag(flip, 1) @ canonical_xy (image in [0, 1])."""

    scale: float
    angle: float
    flip: float
    offset: tuple[float, float]

    def to_canonical(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        dx, dy = (x - self.offset[0]) / self.scale, (y - self.offset[1]) / self.scale
        return self.flip * (c * dx + s * dy), -s * dx + c * dy


def _sample_placement(rng: np.random.Generator, parts: Sequence[Capsule]) -> Placement:
    """Random size, tilt, facing and position that keep the whole animal in the frame."""
    scale, angle = rng.uniform(0.68, 0.86), np.radians(rng.uniform(-8, 8))
    flip = 1.0 if rng.random() < 0.5 else -1.0
    c, s = np.cos(angle), np.sin(angle)
    px = np.array([p[0] for cap in parts for p in (cap.start, cap.end)])
    py = np.array([p[1] for cap in parts for p in (cap.start, cap.end)])
    reach = max(max(cap.r0, cap.r1) for cap in parts)
    ix, iy = scale * (c * flip * px - s * py), scale * (s * flip * px + c * py)
    margin = 0.02 + scale * reach
    offset = []
    for lo, hi in ((ix.min(), ix.max()), (iy.min(), iy.max())):
        room_lo, room_hi = margin - lo, 1 - margin - hi
        offset.append(rng.uniform(room_lo, room_hi) if room_lo < room_hi else (room_lo + room_hi) / 2)
    return Placement(scale, angle, flip, (offset[0], offset[1]))


@dataclass
class Fields:
    """Per-pixel geometry of the animal (canonical units unless noted)."""

    sdf: np.ndarray  # signed distance to the silhouette, negative inside
    owner: np.ndarray  # index of the nearest part
    along: np.ndarray  # coordinate along the owner's axis
    across: np.ndarray  # signed distance from the owner's axis, over its radius (-1..1 inside)


def _fields(parts: Sequence[Capsule], x: np.ndarray, y: np.ndarray) -> Fields:
    """Union of tapered capsules: sdf = min_i (|p - closest_i| - r_i(t))."""
    sdf = np.full(x.shape, np.inf, dtype=np.float32)
    owner = np.zeros(x.shape, dtype=np.int16)
    along = np.zeros_like(sdf)
    across = np.zeros_like(sdf)
    for i, cap in enumerate(parts):
        ax, ay = cap.start
        vx, vy = cap.end[0] - ax, cap.end[1] - ay
        length = float(np.hypot(vx, vy))
        ux, uy = vx / length, vy / length
        t_len = (x - ax) * ux + (y - ay) * uy
        normal = -(x - ax) * uy + (y - ay) * ux
        t = np.clip(t_len / length, 0.0, 1.0)
        radius = cap.r0 + t * (cap.r1 - cap.r0)
        d = np.hypot(x - ax - t * vx, y - ay - t * vy) - radius
        nearer = d < sdf
        sdf = np.where(nearer, d, sdf)
        owner[nearer] = i
        along = np.where(nearer, t_len, along)
        across = np.where(nearer, normal / radius, across)
    return Fields(sdf, owner, along, across)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    h, s, v = rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.3, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)


def _background(rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth scene: a two-colour gradient, sometimes a soft horizon, low-frequency noise."""
    direction = rng.uniform(0, 2 * np.pi)
    g = np.clip(0.5 + (x - 0.5) * np.cos(direction) + (y - 0.5) * np.sin(direction), 0, 1)
    img = _random_colour(rng) * (1 - g[..., None]) + _random_colour(rng) * g[..., None]
    if rng.random() < 0.5:
        ground = 1 / (1 + np.exp(-(y - rng.uniform(0.45, 0.8)) / 0.03))
        img = img * (1 - ground[..., None]) + _random_colour(rng) * ground[..., None]
    for _ in range(3):  # at most 1.5 cycles per image: smooth at any --size
        fx, fy = rng.uniform(-1.5, 1.5, size=2)
        wave = np.cos(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
        img = img + wave[..., None] * rng.uniform(-0.05, 0.05, size=3).astype(np.float32)
    return np.clip(img, 0, 1)


def _shading(fields: Fields, y: np.ndarray) -> np.ndarray:
    """Light from above and rounded limbs: smooth, so A coats carry no texture."""
    top_light = np.clip(1.08 - 0.25 * (y + 0.4), 0.8, 1.1)
    return top_light * (1 - 0.15 * np.clip(fields.across, -1, 1) ** 2)


def _horse_coat(rng: np.random.Generator, parts: Sequence[Capsule], fields: Fields,
                shading: np.ndarray, mask: np.ndarray, behind: float) -> np.ndarray:
    """The horse's rendered colours, (H, W, 3) float32 in [0, 1]: the first coat (random order)
    whose mean luma over `mask`, tone and shading applied, differs from the background luma
    `behind` by at least MIN_COAT_CONTRAST wins, else the most contrasting one. Checking the
    rendered colours, not the flat body colour (toy v3), keeps every horse visible."""
    order = rng.permutation(len(COATS))
    tone = rng.uniform(0.88, 1.12) + rng.uniform(-0.03, 0.03, size=3).astype(np.float32)
    is_points = np.array([cap.points for cap in parts])[fields.owner]
    tried = []  # (contrast, rendered coat), in order, until one passes
    for body, points in (COATS[k] for k in order):
        coat = np.clip(np.where(is_points[..., None], np.float32(points), np.float32(body)) * tone, 0, 1)
        coat = np.clip(coat * shading[..., None], 0, 1)
        contrast = abs(float((coat[mask] @ LUMA).mean()) - behind)
        if contrast >= MIN_COAT_CONTRAST:
            return coat
        tried.append((contrast, coat))
    return max(tried, key=lambda pair: pair[0])[1]


def _zebra_coat(rng: np.random.Generator, parts: Sequence[Capsule], fields: Fields,
                period_px: float, px_per_unit: float) -> np.ndarray:
    """Anti-aliased black/white stripes, s = sin(2 pi u / period + phase) + duty, where
    u runs across the trunk (bent, wavy) and along every other part's axis."""
    period = period_px / px_per_unit
    is_trunk = np.array([cap.trunk for cap in parts])[fields.owner]
    bend, wobble = rng.uniform(-0.6, 0.6), rng.uniform(0, 2 * np.pi)
    trunk_u = (fields.along + bend * fields.across * 0.12
               + 0.25 * period * np.sin(fields.across * 2.5 + wobble))
    u = np.where(is_trunk, trunk_u, fields.along)
    s = np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi)) + rng.uniform(-0.25, 0.25)
    white = np.clip(0.5 + s * period_px / (2 * np.pi), 0, 1)[..., None]  # ~1 px edges
    dark = rng.uniform(0.04, 0.14) + rng.uniform(-0.02, 0.02, size=3)
    light = rng.uniform(0.85, 0.97) + rng.uniform(-0.02, 0.02, size=3)
    return (dark * (1 - white) + light * white).astype(np.float32)


@dataclass(frozen=True)
class Sample:
    """One rendered toy image with its ground truth."""

    image: np.ndarray  # (size, size, 3) uint8, the scene with the animal
    mask: np.ndarray  # (size, size) bool, True where the animal covers at least half the pixel
    background: np.ndarray  # (size, size, 3) uint8, the same scene without the animal


def render_sample(rng: np.random.Generator, *, size: int, domain: str) -> Sample:
    """One image, its silhouette mask and its background plate.

    Background and animal are drawn identically for both domains; only the coat differs
    (domain "A": smooth horse coat, "B": zebra stripes). ValueError for another domain.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(centres, centres)
    background = _background(rng, x, y)
    parts = _sample_animal(rng)
    placement = _sample_placement(rng, parts)
    cx, cy = placement.to_canonical(x, y)
    fields = _fields(parts, cx, cy)
    px_per_unit = size * placement.scale
    coverage = np.clip(0.5 - fields.sdf * px_per_unit, 0, 1)
    mask = coverage >= 0.5
    shading = _shading(fields, cy)
    if domain == "A":
        behind = float(np.dot(background[mask].mean(axis=0), LUMA))
        animal = _horse_coat(rng, parts, fields, shading, mask, behind)
    else:
        period_px = rng.uniform(7.0, 10.0) * size / 64
        coat = _zebra_coat(rng, parts, fields, period_px, px_per_unit)
        animal = np.clip(coat * shading[..., None], 0, 1)
    alpha = coverage[..., None]
    image = background * (1 - alpha) + animal * alpha
    return Sample(image=_to_uint8(image), mask=mask, background=_to_uint8(background))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255).astype(np.uint8)


# ---------------------------------------------------------------- dataset on disk


def _manifest(*, size: int, n_train: int, n_test: int, seed: int) -> dict:
    return {"format": FORMAT, "version": VERSION, "seed": seed, "size": size,
            "n_train": n_train, "n_test": n_test}


def _layout(n_train: int, n_test: int) -> dict[str, list[str]]:
    """Every directory of the dataset and the file names it must hold."""
    counts = {"train": n_train, "test": n_test}
    width = max(4, len(str(max(counts.values()) - 1)))
    names = {split: [f"{i:0{width}d}.png" for i in range(n)] for split, n in counts.items()}
    layout = {f"{split}{d}": names[split] for split in SPLITS for d in DOMAINS}
    layout.update({f"{MASKED_SPLIT}{d}_{extra}": names[MASKED_SPLIT] for d in DOMAINS for extra in EXTRAS})
    return layout


def _is_complete(out: Path, manifest: dict, layout: dict[str, list[str]]) -> bool:
    try:
        if json.loads((out / MANIFEST).read_text()) != manifest:
            return False
    except (OSError, ValueError):
        return False
    return all((out / d).is_dir() and sorted(os.listdir(out / d)) == names
               for d, names in layout.items())


def _clear(out: Path, layout: dict[str, list[str]]) -> None:
    """Remove an older or partial toy set; refuse to touch anything this script did not make."""
    foreign = [e for e in os.listdir(out) if e not in layout and e != MANIFEST]
    for d in layout:
        if (out / d).is_dir():
            foreign += [f"{d}/{f}" for f in os.listdir(out / d) if not IMAGE_NAME.match(f)]
    if foreign:
        shown = ", ".join(sorted(foreign)[:5]) + (" ..." if len(foreign) > 5 else "")
        raise FileExistsError(f"--out {out} holds files this script did not make ({shown}); "
                              "choose a new or empty --out directory")
    (out / MANIFEST).unlink(missing_ok=True)
    for d in layout:
        shutil.rmtree(out / d, ignore_errors=True)


def generate(out: Path, *, size: int = 64, n_train: int = 400, n_test: int = 50,
             seed: int = 0, log: Callable[[str], None] = print) -> bool:
    """Write the toy dataset to `out`; return False (and write nothing) if it is already there.

    Image i of split s and domain d comes from its own stream seeded (seed, s, d, i), so
    the output is byte-identical for the same arguments and a larger set extends a smaller.
    An older or partial set in `out` is replaced; FileExistsError if `out` holds anything
    else (a real dataset is never deleted).
    """
    manifest = _manifest(size=size, n_train=n_train, n_test=n_test, seed=seed)
    layout = _layout(n_train, n_test)
    if _is_complete(out, manifest, layout):
        log(f"toy dataset already complete at {out} (seed={seed}, size={size}, "
            f"n_train={n_train}, n_test={n_test}); nothing to do")
        return False
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; pass a directory")
    if out.exists():
        _clear(out, layout)
    start = time.perf_counter()
    for s, split in enumerate(SPLITS):
        for d, domain in enumerate(DOMAINS):
            image_dir = out / f"{split}{domain}"
            mask_dir, plate_dir = (out / f"{split}{domain}_{extra}" for extra in EXTRAS)
            with_extras = split == MASKED_SPLIT
            for folder in (image_dir, mask_dir, plate_dir) if with_extras else (image_dir,):
                folder.mkdir(parents=True, exist_ok=True)
            names = layout[image_dir.name]
            for i, name in enumerate(names):
                sample = render_sample(np.random.default_rng([seed, s, d, i]), size=size, domain=domain)
                Image.fromarray(sample.image, "RGB").save(image_dir / name)
                if with_extras:
                    Image.fromarray(sample.mask.astype(np.uint8) * 255, "L").save(mask_dir / name)
                    Image.fromarray(sample.background, "RGB").save(plate_dir / name)
            log(f"  {image_dir.name}: {len(names)} images")
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, out / MANIFEST)  # last: only a finished set carries a manifest
    n_images = 2 * (n_train + n_test)
    log(f"wrote toy dataset to {out}: {n_images} images {size}x{size} + {2 * n_test} test masks "
        f"and background plates in {time.perf_counter() - start:.1f}s (seed={seed})")
    return True


# ---------------------------------------------------------------- command line


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value
    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Generate the embedded horse->zebra toy dataset (CycleGAN layout, unpaired, "
                    "no download). Skips the work if --out already holds the same dataset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output folder; gets trainA, trainB, testA, testB, testA_masks, "
                             "testB_masks, testA_background, testB_background and manifest.json")
    parser.add_argument("--size", type=_at_least(32), default=64,
                        help="image side in pixels (>= 32: smaller loses the stripes)")
    parser.add_argument("--n_train", type=_at_least(1), default=400,
                        help="training images per domain")
    parser.add_argument("--n_test", type=_at_least(1), default=50, help="test images per domain")
    parser.add_argument("--seed", type=_at_least(0), default=0,
                        help="random seed; the same seed and arguments give byte-identical files")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        generate(args.out, size=args.size, n_train=args.n_train, n_test=args.n_test,
                 seed=args.seed)
    except (FileExistsError, NotADirectoryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
