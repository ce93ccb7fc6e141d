"""Winograd F(4x4, 3x3) convolution for float32 inference on CPU (Lavin & Gray, 2016).

A 3x3 convolution computes each 4x4 output tile from a 6x6 input tile with 36 multiplications per
(input, output) channel pair instead of 144:

    Y = A^T [ (G w G^T) * (B^T d B) ] A      (elementwise product, summed over input channels)

Summing over channels turns the 36 elementwise products into 36 matrix products, which is where
the time goes. It is the same convolution (errors ~1e-5 relative in float32, tested); a residual
block of the default generator at 256 px (256 channels at 64x64) takes 31 ms instead of 48 with
oneDNN's direct convolution. With fewer channels the transforms' memory traffic eats the gain
(measured: 128 -> 256 channels at 128x128 is no faster), so only convolutions with at least
MIN_CHANNELS channels on both sides are converted. cuDNN picks Winograd by itself where it pays,
so this is for CPU inference only (models.base_model.BaseModel.prepare_inference).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MIN_CHANNELS = 256
CHUNK_BYTES = 16 * 2**20  # transformed input per chunk of tile rows: keeps the working set in cache

# Interpolation points 0, +-1, +-2 and infinity.
_BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                   dtype=torch.float64)
_B_IN = torch.kron(_BT, _BT).float()  # B^T d B on a flattened 6x6 tile
_A_OUT = torch.kron(_AT, _AT).float()  # A^T m A, 36 -> 16 values


class WinogradConv3x3(nn.Module):
    """Drop-in inference replacement for a 3x3, stride-1, ungrouped nn.Conv2d with zero padding."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not eligible(conv, min_channels=1):
            raise ValueError(f"Winograd F(4x4, 3x3) needs a 3x3, stride-1, ungrouped convolution, got {conv}")
        self.padding = conv.padding[0]
        weight = conv.weight.detach().double()
        u = torch.einsum("ai,kcij,bj->abkc", _G, weight, _G)  # G w G^T per (out, in) channel pair
        self.register_buffer("u", u.reshape(36, *weight.shape[:2]).float().contiguous())
        self.register_buffer("b_in", _B_IN.clone())
        self.register_buffer("a_out", _A_OUT.clone())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        n, c, h, w = x.shape
        out_h, out_w = h + 2 * p - 2, w + 2 * p - 2
        rows, cols = -(-out_h // 4), -(-out_w // 4)  # tiles, the last ones zero-padded
        pads = (p, 4 * cols + 2 - w - p, p, 4 * rows + 2 - h - p)
        x = F.pad(x, pads) if any(pads) else x.contiguous()
        k = self.u.shape[1]
        out = x.new_empty(n, k, 4 * rows, 4 * cols)
        chunk = max(1, CHUNK_BYTES // (36 * c * n * cols * x.element_size()))
        sn, sc, sh, sw = x.stride()
        for r0 in range(0, rows, chunk):
            r = min(chunk, rows - r0)
            tiles = x.as_strided((6, 6, c, n, r, cols), (sh, sw, sc, sn, 4 * sh, 4 * sw),
                                 x.storage_offset() + 4 * r0 * sh)
            v = (self.b_in @ tiles.reshape(36, -1)).view(36, c, -1)
            m = torch.bmm(self.u, v)  # the 36 channel-mixing matrix products
            y = (self.a_out @ m.view(36, -1)).view(4, 4, k, n, r, cols)
            out[:, :, 4 * r0:4 * (r0 + r)].view(n, k, r, 4, cols, 4).copy_(y.permute(3, 2, 4, 0, 5, 1))
        if self.bias is not None:
            out += self.bias.view(1, -1, 1, 1)
        return out[:, :, :out_h, :out_w]


def eligible(conv: nn.Module, *, min_channels: int = MIN_CHANNELS) -> bool:
    """A plain 3x3, stride-1, ungrouped, zero-padded (0 or 1) Conv2d at least this wide on both sides."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
            and conv.padding in ((0, 0), (1, 1)) and min(conv.in_channels, conv.out_channels) >= min_channels)


def use_winograd(net: nn.Module) -> int:
    """Replace the eligible convolutions in `net` (in place, for inference); returns how many."""
    swapped = 0
    for parent in net.modules():
        for name, child in parent.named_children():
            if eligible(child):
                setattr(parent, name, WinogradConv3x3(child).to(child.weight.device))
                swapped += 1
    return swapped
