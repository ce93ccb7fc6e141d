"""Tiled inference: translate an image of any size in overlapping tiles with bounded memory.

Two things make tiles disagree, and each has its remedy here:

- Context. An output pixel depends on a receptive_field() x receptive_field() input window, so
  pixels near a tile's edge see padding instead of their neighbours. Tiles overlap; each blends
  in with a raised-cosine ramp across the middle half of the overlap and gives no weight to the
  outer quarter next to its edge (blend_weights), so the least reliable pixels are dropped and
  the rest are cross-faded smoothly.
- Instance normalisation. The generator normalises every feature map with the mean and variance
  over the whole image; a tile computing its own would normalise differently from its neighbour.
  The statistics are therefore computed for the whole image and shared by all tiles, layer by
  layer: one pass over the tiles per norm layer, each running only as far as that layer and
  summing its input's values and squares over the region each tile owns, with the statistics of
  the layers before it already known. They are exact up to float rounding (the owned regions lie
  away from the tile edges), as an untiled pass would compute them. Cheaper estimates were
  measured and dropped: statistics from a thumbnail of the image (Chen et al., "Towards
  Ultra-Resolution Neural Style Transfer via Thumbnail Instance Normalization", AAAI 2022) gave
  19.5 dB against the untiled translation, and refining all layers at once from full-resolution
  passes diverged (docs/using_a_trained_model.md).

Tile origins are multiples of the generator's size multiple, so every tile's down-sampling grid
lines up with the whole image's.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.networks.layers import Downsample, Upsample

SUGGESTED_TILE = 512  # the tile side error messages suggest (pixels)


def default_overlap(field: int, multiple: int) -> int:
    """Half the receptive field, rounded up to the size multiple: tiled within float rounding of
    untiled (97 dB with make demo's generator, docs/using_a_trained_model.md)."""
    return -(-field // 2 // multiple) * multiple


class TileError(ValueError):
    """A tiling setting cannot work with this generator; the message names the flag and the fix."""


def receptive_field(generator: nn.Module) -> int:
    """Side in input pixels of the window one output pixel depends on, through the convolutions.

    Walks the layers in order (the residual skips add nothing); instance-norm statistics, which
    span the whole image, are left out: tiling handles them separately. 181 for resnet_9blocks.
    """
    field, jump = 1.0, 1.0  # window size and the spacing of one feature pixel, in input pixels
    for layer in generator.modules():
        if isinstance(layer, nn.Conv2d):  # WinogradConv2d included: it is an nn.Conv2d
            kernel, stride = layer.kernel_size[0], layer.stride[0]
            field += (kernel - 1) * jump
            jump *= stride
        elif isinstance(layer, nn.ConvTranspose2d):
            field += (math.ceil(layer.kernel_size[0] / layer.stride[0]) - 1) * jump
            jump /= layer.stride[0]
        elif isinstance(layer, Downsample):  # 3-tap blur, stride 2
            field += 2 * jump
            jump *= 2
        elif isinstance(layer, Upsample):  # bilinear: each output pixel mixes 2 input pixels per axis
            field += jump
            jump /= 2
    return int(math.ceil(field))


@dataclass(frozen=True)
class TileGrid:
    """Tile origins along each axis of an (H, W) image; every tile is `tile` x `tile` (or the side)."""

    height: int
    width: int
    tile: int
    overlap: int
    multiple: int

    def origins(self, side: int) -> list[int]:
        """Start of each tile along an axis of length `side`: steps of tile - overlap, the last tile
        flush with the end; all multiples of `multiple` (side and tile are)."""
        if side <= self.tile:
            return [0]
        step = self.tile - self.overlap
        count = math.ceil((side - self.overlap) / step)
        return sorted({min(i * step, side - self.tile) for i in range(count)})

    def boxes(self) -> list[tuple[int, int, int, int]]:
        """(top, bottom, left, right) of every tile, row by row."""
        th, tw = min(self.tile, self.height), min(self.tile, self.width)
        return [(y, y + th, x, x + tw) for y in self.origins(self.height) for x in self.origins(self.width)]

    def owned(self, side: int) -> list[tuple[int, int]]:
        """The part of the axis each tile owns (a partition): cut in the middle of each overlap,
        on the size multiple so that it falls on whole pixels at every resolution in the network."""
        starts = self.origins(side)
        size = min(self.tile, side)
        cuts = [0] + [(nxt + cur + size) // 2 // self.multiple * self.multiple
                      for cur, nxt in zip(starts, starts[1:])] + [side]
        return list(zip(cuts, cuts[1:]))


def blend_weights(starts: list[int], size: int) -> list[torch.Tensor]:
    """1-D blending weight of each tile along one axis (tiles of `size` starting at `starts`).

    In an overlap of width o with a neighbour, the outer o/4 next to the tile's edge gets weight 0
    and the middle o/2 a raised-cosine ramp, so that the two tiles' weights sum to 1; elsewhere 1.
    """
    weights = []
    for index, start in enumerate(starts):
        weight = torch.ones(size, dtype=torch.float64)
        if index > 0:
            _ramp(weight, starts[index - 1] + size - start, rising=True)
        if index + 1 < len(starts):
            _ramp(weight, start + size - starts[index + 1], rising=False)
        weights.append(weight)
    return weights


def _ramp(weight: torch.Tensor, overlap: int, *, rising: bool) -> None:
    if overlap <= 0:
        return
    margin, width = overlap // 4, max(overlap - 2 * (overlap // 4), 1)
    t = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    ramp = torch.sin(t * math.pi / 2) ** 2  # sin^2 + cos^2 = 1: the neighbour's falling ramp mirrors it
    if rising:
        weight[:margin] = 0
        weight[margin:margin + width] = ramp
    else:
        weight[weight.numel() - margin:] = 0
        weight[weight.numel() - margin - width:weight.numel() - margin] *= ramp.flip(0)


class _StopForward(Exception):
    """Raised by the norm layer being measured: the rest of the network is not needed for it."""


class ImageWideInstanceNorm(nn.Module):
    """Stands in for an affine-free InstanceNorm2d while an image is translated tile by tile.

    Normalises with the image-wide per-channel (mean, var) in `stats`. While `measuring`, it
    instead adds its input's count, sum and sum of squares over `region` (top, bottom, left, right
    in tile pixels, mapped to this layer's resolution) to `sums`, then stops the forward pass.
    """

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self.measuring = False
        self.region: tuple[int, int, int, int] = (0, 0, 0, 0)
        self.tile_height = 1
        self.sums = torch.zeros(3, 1, dtype=torch.float64)  # count, sum, sum of squares (per channel)
        self.device = torch.device("cpu")  # the activations', where the statistics go

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.measuring:
            self._accumulate(x)
            raise _StopForward
        mean, var = self.stats
        # (x - mean) / sqrt(var + eps) per channel: inference batch norm's fused kernel (1.6x faster
        # than the two elementwise operations on CPU), float32 statistics for any input dtype.
        return F.batch_norm(x, mean, var, training=False, eps=self.eps)

    def _accumulate(self, x: torch.Tensor) -> None:
        factor = self.tile_height // x.shape[2]  # 1, 2 or 4: this layer's resolution in the tile
        top, bottom, left, right = (edge // factor for edge in self.region)
        part = x[0, :, top:bottom, left:right].double()
        count = torch.full((x.shape[1],), float(part[0].numel()), dtype=torch.float64, device=x.device)
        self.sums = self.sums + torch.stack([count, part.sum(dim=(1, 2)), part.square().sum(dim=(1, 2))]).cpu()
        self.device = x.device

    def finish_measuring(self) -> None:
        """stats = (mean, biased var) of everything accumulated, as InstanceNorm2d computes them."""
        count, total, squares = self.sums
        mean = total / count
        var = (squares / count - mean.square()).clamp_min(0)
        self.stats = (mean.float().to(self.device), var.float().to(self.device))
        self.measuring = False
        self.sums = torch.zeros(3, 1, dtype=torch.float64)


@contextlib.contextmanager
def image_wide_norms(generator: nn.Module) -> Iterator[list[ImageWideInstanceNorm]]:
    """Swap the generator's affine-free InstanceNorm2d layers for ImageWideInstanceNorm (in place),
    and back on exit. Yields the stand-ins in forward order; [] if the generator has none."""
    swapped = []
    for qualified, child in list(generator.named_modules()):
        if isinstance(child, nn.InstanceNorm2d) and not child.affine and not child.track_running_stats:
            parent_name, _, name = qualified.rpartition(".")
            parent = generator.get_submodule(parent_name)
            stand_in = ImageWideInstanceNorm(child.eps)
            setattr(parent, name, stand_in)
            swapped.append((parent, name, child, stand_in))
    try:
        yield [stand_in for *_, stand_in in swapped]
    finally:
        for parent, name, child, _ in swapped:
            setattr(parent, name, child)


def translate_tiled(forward: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, *,
                    generator: nn.Module, tile: int, overlap: int, multiple: int,
                    progress: bool = False) -> torch.Tensor:
    """Translate one image tile by tile with image-wide instance-norm statistics.

    forward: the generator's inference call, (1, C, h, w) in [-1, 1] -> (1, C', h, w) float32 (it
        runs `generator`, whose norm layers are swapped here while it runs).
    image: (1, C, H, W) in [-1, 1], H and W multiples of `multiple`, on the generator's device.
    tile, overlap: tile side and overlap in pixels, multiples of `multiple`, 0 <= overlap < tile.
    Returns (1, C', H, W) float32 in [-1, 1] on the image's device. Memory: the image, the output
    and one tile's activations, however large the image (plus what the allocator keeps: measured
    in docs/using_a_trained_model.md). Time: one pass per norm layer, each
    stopping at its layer, then the translating pass: 18x to 35x an untiled translation on a CPU
    (measured, docs/using_a_trained_model.md), less with larger tiles.
    """
    _, _, height, width = image.shape
    grid = TileGrid(height=height, width=width, tile=tile, overlap=overlap, multiple=multiple)
    with image_wide_norms(generator) as norms:
        with tqdm(total=(len(norms) + 1) * len(grid.boxes()), desc="tiles", unit="tile", leave=False,
                  disable=not progress) as bar:
            for norm in norms:
                _measure(forward, image, norm=norm, grid=grid, bar=bar)
            return blend_tiles(forward, image, grid=grid, bar=bar)


def _measure(forward: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, *,
             norm: ImageWideInstanceNorm, grid: TileGrid, bar: tqdm) -> None:
    """One pass over the tiles, as far as `norm`, whose input statistics it sums over the part of
    the image each tile owns (every pixel counted once). The layers before it already have theirs."""
    rows = dict(zip(grid.origins(grid.height), grid.owned(grid.height)))
    cols = dict(zip(grid.origins(grid.width), grid.owned(grid.width)))
    norm.measuring = True
    for top, bottom, left, right in grid.boxes():
        (own_top, own_bottom), (own_left, own_right) = rows[top], cols[left]
        norm.region = (own_top - top, own_bottom - top, own_left - left, own_right - left)
        norm.tile_height = bottom - top
        with contextlib.suppress(_StopForward):
            forward(image[:, :, top:bottom, left:right])
        bar.update()
    norm.finish_measuring()


def blend_tiles(forward: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, *, grid: TileGrid,
                bar: tqdm | None = None) -> torch.Tensor:
    """Translate every tile of `grid` with `forward` and cross-fade them (blend_weights): (1, C', H, W).
    The weights are separable and so is their sum: two 1-D sums are all that is kept besides the output."""
    _, _, height, width = image.shape
    ys, xs = grid.origins(height), grid.origins(width)
    th, tw = min(grid.tile, height), min(grid.tile, width)
    wy, wx = blend_weights(ys, th), blend_weights(xs, tw)
    total_y = torch.zeros(height, dtype=torch.float64)
    total_x = torch.zeros(width, dtype=torch.float64)
    for y, weight in zip(ys, wy):
        total_y[y:y + th] += weight
    for x, weight in zip(xs, wx):
        total_x[x:x + tw] += weight
    out = None
    for y, weight_y in zip(ys, wy):
        for x, weight_x in zip(xs, wx):
            result = forward(image[:, :, y:y + th, x:x + tw])
            if out is None:
                out = torch.zeros(1, result.shape[1], height, width, dtype=torch.float32, device=result.device)
            weight = (weight_y / total_y[y:y + th])[:, None] * (weight_x / total_x[x:x + tw])[None, :]
            out[:, :, y:y + th, x:x + tw] += result * weight.to(result.device, torch.float32)
            if bar is not None:
                bar.update()
    return out
