"""Export a trained generator as TorchScript or ONNX, with any input height and width.

    python export.py --name h2z --format onnx          # checkpoints/h2z/latest_net_G.onnx (+ .onnx.json)
    python export.py --name h2z --format torchscript   # checkpoints/h2z/latest_net_G.pt   (+ .pt.json)

The exported network takes float32 (N, C, H, W), RGB (or gray), values in [-1, 1] (pixel / 127.5
- 1), any H, W >= 8, and returns the translation in the same layout and range at the input's size
(it pads to the generator's size multiple and crops back, as the Python API does). It is the plain
float32 generator (no Winograd or bfloat16 rewrites, which are CPU-inference speed-ups).

After writing, the file is loaded back (torch.jit.load, or onnxruntime for ONNX) and compared with
PyTorch on DATAROOT's test images (--num_test, --preprocess as test.py), plus one image of odd
size; the table of max abs differences is printed and the export fails above --parity_tolerance.
The options, input range and channel order are stored in the file (TorchScript extra file
"coopinit.json", ONNX metadata_props) and in FILE.json beside it.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from data import create_dataset
from data.image_folder import DatasetError
from models import create_model
from models.translator import pad_to_multiple, size_multiple
from options.export_options import ExportOptions
from options.test_options import INHERITED_FROM_TRAINING, differing_options_hint, require_dataroot
from util.checkpoint import CheckpointError

METADATA_FILE = "coopinit.json"  # TorchScript extra file holding the metadata


class ExportableGenerator(nn.Module):
    """The generator with padding to its size multiple and cropping back, in the graph."""

    def __init__(self, generator: nn.Module, multiple: int):
        super().__init__()
        self.generator, self.multiple = generator, multiple

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2], images.shape[-1]
        return self.generator(pad_to_multiple(images, self.multiple))[:, :, :height, :width]


def metadata(opt: argparse.Namespace, multiple: int) -> dict:
    """What a consumer of the file needs to feed it and to know where it came from."""
    channels = {3: "RGB", 1: "gray"}
    return {
        "producer": "CoopInit-CUT export.py", "name": opt.name, "epoch": str(opt.epoch), "format": opt.format,
        "input": {"name": "image", "layout": "NCHW", "dtype": "float32", "channels": opt.input_nc,
                  "channel_order": channels[opt.input_nc], "range": [-1.0, 1.0],
                  "from_8bit": "pixel / 127.5 - 1", "height_width": f"any, at least {2 * multiple}"},
        "output": {"name": "translation", "layout": "NCHW", "dtype": "float32", "channels": opt.output_nc,
                   "channel_order": channels[opt.output_nc], "range": [-1.0, 1.0], "to_8bit": "(y + 1) * 127.5",
                   "size": "the input's"},
        "options": {key: getattr(opt, key) for key in INHERITED_FROM_TRAINING},
    }


def export_torchscript(module: nn.Module, path: Path, meta: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated": still the TorchScript way
        torch.jit.save(torch.jit.script(module), str(path), _extra_files={METADATA_FILE: json.dumps(meta)})


def export_onnx(module: nn.Module, path: Path, meta: dict, *, channels: int) -> None:
    import onnx
    from torch.export import Dim

    example = torch.zeros(1, channels, 64, 64)
    shapes = ({0: Dim("batch"), 2: Dim("height", min=8), 3: Dim("width", min=8)},)
    # The dynamo exporter writes the weights to an external FILE.data; export into a scratch folder
    # and save one self-contained file at `path`, so nothing but it (and FILE.json) is left there.
    with tempfile.TemporaryDirectory() as scratch:
        exported = Path(scratch) / path.name
        torch.onnx.export(module, (example,), str(exported), dynamo=True, input_names=["image"],
                          output_names=["translation"], dynamic_shapes=shapes, verbose=False)
        model = onnx.load(str(exported))  # reads the external weights into the model
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, str(path))


def load_exported(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The exported file as a function of a float32 (N, C, H, W) array, run as a consumer would."""
    if path.suffix == ".onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: session.run(None, {"image": images})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
        module = torch.jit.load(str(path), map_location="cpu")
    return lambda images: module(torch.from_numpy(images)).detach().numpy()


def parity_images(opt: argparse.Namespace) -> list[tuple[str, torch.Tensor]]:
    """DATAROOT's first --num_test test images, preprocessed as test.py does, and an odd-size crop of the first."""
    dataset = create_dataset(opt)
    items = [dataset[i] for i in range(int(min(opt.num_test, len(dataset))))]
    images = [(Path(item["A_paths"]).name, item["A"][None]) for item in items]
    first = images[0][1]
    odd = first[:, :, : max(8, first.shape[2] - 3) | 1, : max(8, first.shape[3] - 6) | 1]
    return images + [(f"{images[0][0]} cropped to {odd.shape[3]}x{odd.shape[2]}", odd)]


def check_parity(exported: Callable[[np.ndarray], np.ndarray], reference: nn.Module,
                 images: list[tuple[str, torch.Tensor]]) -> list[tuple[str, tuple[int, int], float]]:
    """(image, (H, W), max |exported - PyTorch|) per image."""
    rows = []
    with torch.inference_mode():
        for name, image in images:
            expected = reference(image).numpy()
            got = exported(image.numpy())
            if got.shape != expected.shape:
                raise RuntimeError(f"exported output has shape {got.shape}, PyTorch's {expected.shape}")
            rows.append((name, tuple(image.shape[-2:]), float(np.abs(got - expected).max())))
    return rows


def export(opt: argparse.Namespace) -> tuple[Path, list[tuple[str, tuple[int, int], float]]]:
    """Write the file and FILE.json; return the path and the parity rows (the caller judges them)."""
    require_dataroot(opt)
    model = create_model(opt, torch.device("cpu"))
    run_dir = Path(opt.checkpoints_dir) / opt.name
    try:
        model.load_generator(run_dir, opt.epoch)
    except CheckpointError as err:
        raise CheckpointError(f"{err}{differing_options_hint(opt)}") from err
    multiple = size_multiple(model.netG)
    module = ExportableGenerator(model.netG.eval(), multiple).eval()
    suffix = ".onnx" if opt.format == "onnx" else ".pt"
    path = Path(opt.export_path) if opt.export_path else run_dir / f"{opt.epoch}_net_G{suffix}"
    images = parity_images(opt)  # before writing: a missing dataset stops the export early
    meta = metadata(opt, multiple)
    path.parent.mkdir(parents=True, exist_ok=True)  # a new folder in --export_path, as for any output path
    if opt.format == "onnx":
        export_onnx(module, path, meta, channels=opt.input_nc)
    else:
        export_torchscript(module, path, meta)
    rows = check_parity(load_exported(path), module, images)
    meta["parity"] = {"max_abs_diff": max(diff for *_, diff in rows), "images": len(rows),
                      "tolerance": opt.parity_tolerance}
    path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=1) + "\n")
    return path, rows


def main(argv: list[str] | None = None) -> int:
    opt = ExportOptions().parse(argv)
    try:
        path, rows = export(opt)
    except (DatasetError, CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path} and {path.name}.json beside it")
    print(f"parity with PyTorch (float32, CPU), tolerance {opt.parity_tolerance:g}:")
    print("| image | W x H | max abs diff |\n| --- | --- | --- |")  # W x H, as the crop's label and PIL write sizes
    for name, (height, width), diff in rows:
        print(f"| {name} | {width} x {height} | {diff:.2e} |")
    worst = max(diff for *_, diff in rows)
    if worst > opt.parity_tolerance:
        print(f"error: the exported file differs from PyTorch by {worst:.2e} > --parity_tolerance "
              f"{opt.parity_tolerance:g}; do not ship it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
