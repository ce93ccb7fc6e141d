"""Winograd F(4x4, 3x3) convolution on CPU in float32, for training and inference (Lavin & Gray, 2016).

A 3x3 convolution computes each 4x4 output tile from a 6x6 input tile with 36 multiplications per
(input, output) channel pair instead of 144:

    Y = A^T [ (G w G^T) * (B^T d B) ] A      (elementwise product, summed over input channels)

Summing over channels turns the 36 elementwise products into 36 matrix products M = U V, which is
where the time goes. Training differentiates through the same algorithm, so both gradients are 36
matrix products too (Lavin & Gray, section 4):

    dL/dU = dL/dM V^T  ->  dL/dw = G^T (dL/dU) G
    dL/dV = U^T dL/dM  ->  dL/dd = B (dL/dV) B^T, overlap-added over the 6x6 tiles (stride 4)

with dL/dM = A (dL/dY) A^T. It is the same convolution up to float32 rounding (relative errors of
~1e-6-1e-5 against the direct convolution, for the output and both gradients; tested). Measured on
this project's CPU (docs/results.md, "Speed"): a residual-block convolution of the default generator
(256 channels, 32x32 map, forward and backward, one thread) takes 1.65x less time than oneDNN's direct
convolution. With fewer channels
the transforms' memory traffic eats the gain, so the generator uses it only for convolutions with at
least MIN_CHANNELS channels on both sides (`eligible`). On GPUs, in bfloat16 or under autocast,
WinogradConv2d is a plain nn.Conv2d (cuDNN picks Winograd by itself where it pays).
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

MIN_CHANNELS = 128
# Below this many pixels per feature map the direct convolution trains faster (one thread, 128 channels:
# 16x16 took 3.9-5.2 ms direct vs 8.3-9.7 ms Winograd forward + backward; 32x32 18.9 vs 8.1 ms).
MIN_TRAIN_PIXELS = 32 * 32
CHUNK_BYTES = 4 * 2**20  # a transformed chunk of tile rows: small enough to stay in cache

# Interpolation points 0, +-1, +-2 and infinity.
_BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                   dtype=torch.float64)
_B_IN = torch.kron(_BT, _BT).float()  # B^T d B on a flattened 6x6 tile: (36, 36)
_A_OUT = torch.kron(_AT, _AT).float()  # A^T m A, 36 -> 16 values: (16, 36)
_G_W = torch.kron(_G, _G).float()  # G w G^T on a flattened 3x3 kernel: (36, 9)

_enabled = os.environ.get("COOPINIT_WINOGRAD") != "0"  # COOPINIT_WINOGRAD=0: direct convolutions everywhere


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within this block every WinogradConv2d computes nn.Conv2d's direct convolution: the plain
    computation that tests and benchmarks compare against."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def _tile_grid(height: int, width: int) -> tuple[int, int]:
    """Rows and columns of 4x4 output tiles for an (already padded) input; the last ones zero-padded."""
    return -(-(height - 2) // 4), -(-(width - 2) // 4)


def _input_tiles(x: torch.Tensor, rows: int, cols: int, first_row: int = 0) -> torch.Tensor:
    """(6, 6, C, N, rows, cols) view of the overlapping 6x6 input tiles (stride 4) of x (N, C, H, W)."""
    sn, sc, sh, sw = x.stride()
    return x.as_strided((6, 6, x.shape[1], x.shape[0], rows, cols), (sh, sw, sc, sn, 4 * sh, 4 * sw),
                        x.storage_offset() + 4 * first_row * sh)


class _Workspace(threading.local):
    """Scratch buffers reused by every call in this thread. Fresh intermediates of a dozen sizes per
    layer fragment glibc's heap (which util.runtime keeps instead of returning it to the kernel):
    measured +150-300 MiB peak RSS over a training iteration, against ~4 x CHUNK_BYTES here."""

    def __init__(self):
        self.buffers: dict[int, torch.Tensor] = {}

    def get(self, slot: int, *shape: int) -> torch.Tensor:
        numel = math.prod(shape)
        buffer = self.buffers.get(slot)
        if buffer is None or buffer.numel() < numel:  # a chunk's size at once: fewer regrowths
            # A normal tensor even when first needed under inference_mode (test.py, in-training
            # evaluation): an inference tensor could not be written in place by training later.
            with torch.inference_mode(False):
                buffer = self.buffers[slot] = torch.empty(max(numel, CHUNK_BYTES // 4))
        return buffer[:numel].view(shape)


_workspace = _Workspace()


def _transform_input(x: torch.Tensor, rows: int, cols: int, first_row: int, *, slot: int) -> torch.Tensor:
    """V = B^T d B for `rows` tile rows from `first_row`, in workspace slot `slot` (slot + 1 is used
    on the way): (36, C, N * rows * cols)."""
    c, n = x.shape[1], x.shape[0]
    tiles = _workspace.get(slot + 1, 6, 6, c, n, rows, cols)
    tiles.copy_(_input_tiles(x, rows, cols, first_row))
    v = _workspace.get(slot, 36, c * n * rows * cols)
    return torch.mm(_B_IN, tiles.view(36, -1), out=v).view(36, c, -1)


def _transform_weight(weight: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """U = G w G^T: (K, C, 3, 3) -> (36, K, C), into `out` if given."""
    k, c = weight.shape[:2]
    return torch.mm(_G_W, weight.reshape(k * c, 9).t(), out=out).view(36, k, c)


def _pad_to_tiles(x: torch.Tensor, padding: int) -> tuple[torch.Tensor, int, int]:
    """Zero-pad x by `padding` and up to whole tiles; returns it with the tile grid."""
    height, width = x.shape[2] + 2 * padding, x.shape[3] + 2 * padding
    rows, cols = _tile_grid(height, width)
    pads = (padding, 4 * cols + 2 - width + padding, padding, 4 * rows + 2 - height + padding)
    return (F.pad(x, pads) if any(pads) else x.contiguous()), rows, cols


def _chunk_rows(n: int, channels: int, rows: int, cols: int) -> int:
    """Tile rows per chunk: a transformed chunk (36 values per tile and channel) takes ~CHUNK_BYTES."""
    return min(rows, max(1, CHUNK_BYTES // (36 * 4 * channels * n * cols)))


def _forward(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, *, rows: int, cols: int) -> torch.Tensor:
    """Y = A^T (U V) A + bias over chunks of tile rows (so V stays in cache); x is padded to whole
    tiles, u is (36, K, C), bias (K,) or None. Returns Y: (N, K, 4 rows, 4 cols)."""
    n, k = x.shape[0], u.shape[1]
    out = x.new_empty(n, k, 4 * rows, 4 * cols)
    chunk = _chunk_rows(n, max(k, x.shape[1]), rows, cols)
    for r0 in range(0, rows, chunk):
        r = min(chunk, rows - r0)
        v = _transform_input(x, r, cols, r0, slot=0)
        m = torch.bmm(u, v, out=_workspace.get(2, 36, k, v.shape[2]))
        y = torch.mm(_A_OUT, m.view(36, -1), out=_workspace.get(0, 16, m[0].numel()))
        if bias is not None:
            y.view(16, k, -1).add_(bias.view(1, k, 1))
        out[:, :, 4 * r0:4 * (r0 + r)].view(n, k, r, 4, cols, 4).copy_(y.view(4, 4, k, n, r, cols)
                                                                       .permute(3, 2, 4, 0, 5, 1))
    return out


def _backward(x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor, *, rows: int, cols: int,
              need_x: bool, need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of Y = winograd(x, weight) for x (tile-padded, as in _forward) and weight, chunk by
    chunk of tile rows like the forward pass; V is recomputed (cheaper than keeping it: it is 2.25x x)."""
    n, c = x.shape[:2]
    k = weight.shape[0]
    u_t = _transform_weight(weight, _workspace.get(4, 36, k * c)).transpose(1, 2)
    grad_u = _workspace.get(5, 36, k, c).zero_() if need_w else None
    grad_x = x.new_zeros(n, c, rows + 1, 4, cols + 1, 4) if need_x else None  # tile rows 4 apart, 6 high
    grad_y = grad_out.reshape(n, k, rows, 4, cols, 4)
    chunk = _chunk_rows(n, max(k, c), rows, cols)
    for r0 in range(0, rows, chunk):
        r = min(chunk, rows - r0)
        tiles = _workspace.get(3, 4, 4, k, n, r, cols)
        tiles.copy_(grad_y[:, :, r0:r0 + r].permute(3, 5, 1, 0, 2, 4))
        grad_m = torch.mm(_A_OUT.t(), tiles.view(16, -1), out=_workspace.get(2, 36, k * n * r * cols))
        grad_m = grad_m.view(36, k, -1)  # A (dL/dY) A^T per tile
        if grad_u is not None:
            grad_u.baddbmm_(grad_m, _transform_input(x, r, cols, r0, slot=0).transpose(1, 2))
        if grad_x is not None:
            grad_v = torch.bmm(u_t, grad_m, out=_workspace.get(0, 36, c, grad_m.shape[2]))
            t = torch.mm(_B_IN.t(), grad_v.view(36, -1), out=_workspace.get(1, 36, grad_v[0].numel()))
            t = t.view(6, 6, c, n, r, cols).permute(3, 2, 4, 0, 5, 1)  # (N, C, r, 6, cols, 6)
            g = grad_x[:, :, r0:r0 + r + 1]  # overlap-add the 6x6 tiles
            g[:, :, :r, :, :cols, :] += t[:, :, :, :4, :, :4]
            g[:, :, 1:, :2, :cols, :] += t[:, :, :, 4:, :, :4]
            g[:, :, :r, :, 1:, :2] += t[:, :, :, :4, :, 4:]
            g[:, :, 1:, :2, 1:, :2] += t[:, :, :, 4:, :, 4:]
    if grad_x is not None:
        grad_x = grad_x.view(n, c, 4 * rows + 4, 4 * cols + 4)[:, :, :x.shape[2], :x.shape[3]]
    if grad_u is not None:
        grad_u = (_G_W.t() @ grad_u.view(36, k * c)).t().reshape(k, c, 3, 3)  # G^T (dL/dU) G
    return grad_x, grad_u


class _WinogradConv3x3Function(torch.autograd.Function):
    """3x3, stride-1 convolution (+ bias) of a tile-padded input by Winograd, with Winograd gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, rows: int,
                cols: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.grid = (rows, cols)
        k, c = weight.shape[:2]
        return _forward(x, _transform_weight(weight, _workspace.get(4, 36, k * c)), bias, rows=rows, cols=cols)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        rows, cols = ctx.grid
        grad_x, grad_w = _backward(x, weight, grad_out, rows=rows, cols=cols, need_x=ctx.needs_input_grad[0],
                                   need_w=ctx.needs_input_grad[1])
        grad_bias = grad_out.sum((0, 2, 3)) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_bias, None, None


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                     padding: int = 0) -> torch.Tensor:
    """F.conv2d(x, weight, bias, padding=padding) for a 3x3 kernel, stride 1, by Winograd F(4x4, 3x3);
    differentiable in x, weight and bias. x: (N, C, H, W) float32 on the CPU; weight: (K, C, 3, 3);
    bias: (K,) or None. Returns (N, K, H + 2 padding - 2, W + 2 padding - 2)."""
    out_h, out_w = x.shape[2] + 2 * padding - 2, x.shape[3] + 2 * padding - 2
    x, rows, cols = _pad_to_tiles(x, padding)
    out = _WinogradConv3x3Function.apply(x, weight, bias, rows, cols)
    return out if out.shape[2:] == (out_h, out_w) else out[:, :, :out_h, :out_w]


class WinogradConv2d(nn.Conv2d):
    """nn.Conv2d (3x3, stride 1, zero padding 0 or 1, ungrouped) that computes by Winograd F(4x4, 3x3)
    on the CPU in float32, forward and backward. Same parameters and state_dict as nn.Conv2d; on other
    devices, other dtypes, under autocast or inside `disabled()` it is nn.Conv2d.

    In eval mode without gradients (inference) the transformed weights G w G^T are computed once and
    reused until the weights change.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not eligible(self, min_channels=1):
            raise ValueError(f"Winograd F(4x4, 3x3) needs a 3x3, stride-1, ungrouped, zero-padded (0 or 1) "
                             f"convolution, got {nn.Conv2d.extra_repr(self)}")
        self._cached_u: tuple[tuple, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (_enabled and x.device.type == "cpu" and x.dtype == self.weight.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu")):
            return super().forward(x)
        if self.training or (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)):
            if x.shape[-2] * x.shape[-1] < MIN_TRAIN_PIXELS:
                return super().forward(x)
            return winograd_conv3x3(x, self.weight, self.bias, padding=self.padding[0])
        return self._inference_forward(x)

    @torch.no_grad()
    def _inference_forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (self.weight.data_ptr(), self.weight._version)
        if self._cached_u is None or self._cached_u[0] != key:
            self._cached_u = (key, _transform_weight(self.weight).contiguous())
        out_h, out_w = x.shape[2] + 2 * self.padding[0] - 2, x.shape[3] + 2 * self.padding[0] - 2
        x, rows, cols = _pad_to_tiles(x, self.padding[0])
        return _forward(x, self._cached_u[1], self.bias, rows=rows, cols=cols)[:, :, :out_h, :out_w]

    def _apply(self, fn, recurse=True):  # .to() / .cpu() / .to(bfloat16): the cached transform is stale
        self._cached_u = None
        return super()._apply(fn, recurse)


def conv2d(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
           bias: bool = True) -> nn.Conv2d:
    """nn.Conv2d with these arguments; a WinogradConv2d where that pays: 3x3, stride 1, zero padding
    0 or 1, at least MIN_CHANNELS channels on both sides."""
    fast = (kernel_size == 3 and stride == 1 and padding in (0, 1)
            and min(in_channels, out_channels) >= MIN_CHANNELS)
    return (WinogradConv2d if fast else nn.Conv2d)(in_channels, out_channels, kernel_size, stride=stride,
                                                   padding=padding, bias=bias)


def eligible(conv: nn.Module, *, min_channels: int = MIN_CHANNELS) -> bool:
    """A 3x3, stride-1, ungrouped, zero-padded (0 or 1) Conv2d at least this wide on both sides."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and conv.padding in ((0, 0), (1, 1)) and min(conv.in_channels, conv.out_channels) >= min_channels)
