"""A trained generator as a function: images in, translations of the same size out.

    from models import load_translator
    translate = load_translator("checkpoints/h2z")          # architecture from train_opt.json
    zebra = translate(Image.open("horse.jpg"))              # PIL in, PIL out, same size

test.py builds its translator with build_translator(opt), so the command line and the Python API
run the same code: the checkpoint's generator, prepared for inference (BaseModel.prepare_inference),
each image padded to the generator's size multiple and cropped back, tiled when asked or when it
would not fit in memory (models/tiling.py). docs/using_a_trained_model.md has the details.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import psutil
import torch
import torch.nn.functional as F
from PIL import Image

from data.image_folder import convert_image
from data.transforms import to_tensor
from models import create_model
from models.tiling import SUGGESTED_TILE, TileError, default_overlap, receptive_field, translate_tiled
from options.test_options import TestOptions, differing_options_hint
from util.checkpoint import CheckpointError
from util.image import to_uint8
from util.runtime import select_device

# Padding of sides that are not a multiple of the generator's, chosen by measurement (bench/
# full_resolution.py padding; docs/using_a_trained_model.md): half the border error of reflect.
PAD_MODE = "replicate"
# Peak memory of an untiled float32 translation per input pixel and generator filter (--ngf): 26-28
# measured on CPU (bench/full_resolution.py memory), 40 with a margin. Decides when to tile, and how large.
BYTES_PER_PIXEL_PER_FILTER = 40.0
MEMORY_HEADROOM = 0.5  # use at most this share of the free memory for one translation


class InferenceMemoryError(MemoryError):
    """An image did not fit in memory; the message suggests tiling."""


def size_multiple(generator: torch.nn.Module) -> int:
    """Input sides must be divisible by this (2 ** number of stride-2 downsamplings)."""
    return getattr(generator, "size_multiple", 1)


def pad_to_multiple(images: torch.Tensor, multiple: int, mode: str = PAD_MODE) -> torch.Tensor:
    """(N, C, H, W) padded at the bottom and right to sides divisible by `multiple` (a copy).
    TorchScript- and torch.export-friendly: export.py puts it in the exported graph."""
    height, width = images.shape[-2], images.shape[-1]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode)


class Translator:
    """Translates images with a trained generator; the output always has the input's size.

    Call it with
      - a PIL image (any mode; converted to RGB or L as the generator expects) -> PIL image;
      - a uint8 numpy array (H, W, C) or (H, W), RGB channel order -> uint8 array (H, W, C_out);
      - a float tensor (C, H, W) or (N, C, H, W) with values in [-1, 1] (pixel / 127.5 - 1), RGB,
        on any device -> float32 tensor of the same layout in [-1, 1], on the input's device;
      - a list of any of these (sizes may differ) -> a list.
    A 4-D tensor is translated as one batch (image by image when tiled); the rest one by one.
    Sides need not be multiples of anything: images are padded (`pad_mode`, default PAD_MODE) and
    cropped back.

    Tiling: with `tile` set, images with a side over `tile` pixels are translated in overlapping
    tiles (models/tiling.py: same result up to float rounding, bounded memory, several times the
    compute). With tile=None, an image whose untiled translation would not fit in the device's free
    memory is tiled by itself, with the largest tiles that fit.

    Raises TypeError (unsupported input), ValueError (wrong channel count, values outside [-1, 1],
    a side under 8 px), TileError (a tile smaller than the receptive field, a bad overlap) and
    InferenceMemoryError (out of memory: the message says which tile to use).
    """

    def __init__(self, model, *, tile: int | None = None, tile_overlap: int | None = None, progress: bool = False):
        self.model = model
        self.device = model.device
        self.input_nc, self.output_nc = model.opt.input_nc, model.opt.output_nc
        self.multiple = size_multiple(model.netG)
        self.min_side = getattr(model.netG, "min_side", 1)
        self.receptive_field = receptive_field(model.netG)
        self.progress = progress
        self.pad_mode = PAD_MODE
        self.tile_overlap = default_overlap(self.receptive_field, self.multiple) if tile_overlap is None else tile_overlap
        self.tile = None if tile is None else self.check_tile(tile)

    def check_tile(self, tile: int) -> int:
        """The tile side to use (rounded down to the size multiple); TileError if it cannot work."""
        if tile < self.receptive_field:
            raise TileError(f"--tile {tile} is smaller than the generator's receptive field ({self.receptive_field} "
                            f"px for --netG {self.model.opt.netG}): each output pixel depends on a "
                            f"{self.receptive_field}x{self.receptive_field} input window, so tiles this small "
                            f"cannot agree; use --tile {SUGGESTED_TILE} or more")
        overlap = self.tile_overlap
        if overlap < 0 or overlap % self.multiple or overlap >= tile // 2:
            raise TileError(f"--tile_overlap {overlap} must be a multiple of {self.multiple}, at least 0 and under "
                            f"half of --tile {tile}; the default is "
                            f"{default_overlap(self.receptive_field, self.multiple)} for this generator")
        return tile // self.multiple * self.multiple

    # -- the call -----------------------------------------------------------------------------
    def __call__(self, images):
        if isinstance(images, (list, tuple)):
            return [self(image) for image in images]
        if isinstance(images, Image.Image):
            out = to_uint8(self.translate_tensor(to_tensor(convert_image(images, self.input_nc))[None]))[0]
            return Image.fromarray(out[:, :, 0] if self.output_nc == 1 else out)
        if isinstance(images, np.ndarray):
            if images.dtype != np.uint8 or images.ndim not in (2, 3):
                raise TypeError(f"numpy images must be uint8 (H, W, C) or (H, W), got {images.dtype} with shape "
                                f"{images.shape}; for float data pass a torch tensor in [-1, 1]")
            return to_uint8(self.translate_tensor(to_tensor(images)[None]))[0]
        if isinstance(images, torch.Tensor):
            if images.dim() not in (3, 4):
                raise ValueError(f"expected a tensor (C, H, W) or (N, C, H, W), got shape {tuple(images.shape)}")
            batch = images if images.dim() == 4 else images[None]
            out = self.translate_tensor(batch).to(images.device)
            return out if images.dim() == 4 else out[0]
        raise TypeError(f"cannot translate a {type(images).__name__}: pass a PIL image, a uint8 numpy array "
                        "(H, W, C), a float tensor in [-1, 1], or a list of these")

    def translate_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """(N, input_nc, H, W) in [-1, 1] -> (N, output_nc, H, W) float32 in [-1, 1] on self.device."""
        self._check(images)
        height, width = images.shape[-2:]
        tile = self.tile if self.tile is not None else self._automatic_tile(images.shape)
        with torch.inference_mode():
            images = images.to(self.device)
            if tile is not None and max(height, width) > tile:
                out = torch.cat([self._run(self._tiled, image[None], tile) for image in images])
            else:
                out = self._run(self._untiled, images)
        return out[:, :, :height, :width]

    def _padded(self, images: torch.Tensor) -> torch.Tensor:
        """pad_to_multiple, without its copy when the sides are multiples already (an 8k input is 768 MiB)."""
        if images.shape[-2] % self.multiple == 0 and images.shape[-1] % self.multiple == 0:
            return images
        return pad_to_multiple(images, self.multiple, self.pad_mode)

    def _untiled(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.translate(self._padded(images))

    def _tiled(self, image: torch.Tensor, tile: int) -> torch.Tensor:
        return translate_tiled(self.model.translate, self._padded(image), generator=self.model.netG,
                               tile=tile, overlap=self.tile_overlap, multiple=self.multiple, progress=self.progress)

    def _check(self, images: torch.Tensor) -> None:
        if not torch.is_floating_point(images):
            raise TypeError(f"image tensors must be floating point in [-1, 1], got {images.dtype}")
        if images.shape[1] != self.input_nc:
            raise ValueError(f"the generator takes {self.input_nc}-channel images (--input_nc), got "
                             f"{images.shape[1]} channels (shape {tuple(images.shape)}; layout N, C, H, W)")
        if min(images.shape[-2:]) < self.min_side:
            raise ValueError(f"an image of {images.shape[-1]}x{images.shape[-2]} px is too small: the generator "
                             f"needs sides of at least {self.min_side} px")
        low, high = images.aminmax()
        if low < -1.001 or high > 1.001:
            raise ValueError(f"image values must lie in [-1, 1] (pixel / 127.5 - 1), got [{low:.3g}, {high:.3g}]")

    def _free_memory(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.mem_get_info(self.device)[0]
        return psutil.virtual_memory().available

    def _automatic_tile(self, shape: torch.Size) -> int | None:
        """None when the untiled translation's estimated peak fits in the free memory; else the
        largest tile that does (at least the receptive field)."""
        budget = MEMORY_HEADROOM * self._free_memory() / (BYTES_PER_PIXEL_PER_FILTER * self.model.opt.ngf)
        if shape[0] * shape[-2] * shape[-1] <= budget:
            return None
        return self.check_tile(max(int(budget ** 0.5), self.receptive_field, 4 * self.tile_overlap))

    def _run(self, work, images: torch.Tensor, *args) -> torch.Tensor:
        try:
            return work(images, *args)
        except torch.OutOfMemoryError as err:
            raise self._memory_error(images.shape) from err
        except RuntimeError as err:  # the CPU allocator's failure is a plain RuntimeError
            if "allocate" not in str(err):
                raise
            raise self._memory_error(images.shape) from err

    def _memory_error(self, shape: torch.Size) -> InferenceMemoryError:
        smaller = max(self.receptive_field, (self.tile or SUGGESTED_TILE * 2) // 2)
        return InferenceMemoryError(
            f"out of memory translating {shape[0]} image(s) of {shape[-1]}x{shape[-2]} px on {self.device}: "
            f"translate in tiles with --tile {smaller} (Python: load_translator(..., tile={smaller}))")


def build_translator(opt: argparse.Namespace, *, progress: bool = False) -> Translator:
    """The translator test.py uses: opt's generator with CHECKPOINTS_DIR/NAME/EPOCH_net_G.pth, prepared
    for inference, tiled by opt.tile / opt.tile_overlap. Raises CheckpointError (naming the options
    that differ from training) and TileError."""
    device = select_device(opt.gpu_ids)
    model = create_model(opt, device)
    try:
        model.load_generator(Path(opt.checkpoints_dir) / opt.name, opt.epoch)
    except CheckpointError as err:
        raise CheckpointError(f"{err}{differing_options_hint(opt)}") from err
    model.prepare_inference()
    return Translator(model, tile=opt.tile, tile_overlap=opt.tile_overlap, progress=progress)


def load_translator(run: str | Path, *, epoch: str | int = "latest", device: str | torch.device | None = None,
                    amp: bool = False, tile: int | None = None, tile_overlap: int | None = None,
                    progress: bool = False) -> Translator:
    """The generator of a training run, ready to translate images (see Translator for the call).

    run: the run's folder, e.g. "checkpoints/h2z" (its train_opt.json, or the reference CUT's
        train_opt.txt, gives the architecture).
    epoch: which checkpoint: "latest", "best" or an epoch number.
    device: "cpu", "cuda", "cuda:1"... (default: the first GPU if there is one, else the CPU).
    amp: bfloat16 weights (for CPUs with AVX512-BF16/AMX and GPUs, far slower on AVX2-only CPUs;
        8-bit outputs within 1-2 levels).
    tile, tile_overlap: tiled translation (pixels); None = tile only what would not fit in memory.
    progress: a progress bar over the tiles of a tiled image.
    Raises FileNotFoundError (no such run), CheckpointError (no weights for `epoch`, or weights that
    do not fit the options) and TileError.
    """
    run = Path(run)
    if not any((run / name).is_file() for name in ("train_opt.json", "train_opt.txt")):
        raise FileNotFoundError(f"no train_opt.json or train_opt.txt in {run}: pass a training run's folder, "
                                "e.g. checkpoints/NAME (it holds the options and EPOCH_net_G.pth; the reference "
                                "CUT code's runs work too)")
    argv = ["--checkpoints_dir", str(run.parent), "--name", run.name, "--epoch", str(epoch)]
    argv += ["--amp"] if amp else []
    argv += ["--tile", str(tile)] if tile is not None else []
    argv += ["--tile_overlap", str(tile_overlap)] if tile_overlap is not None else []
    if device is not None:
        device = torch.device(device)
        argv += ["--gpu_ids", "-1" if device.type == "cpu" else str(device.index or 0)]
    return build_translator(TestOptions().parse(argv), progress=progress)
