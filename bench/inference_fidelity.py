"""How far test.py's fast paths move the translation: Winograd (float32) and --amp (bfloat16) vs the
plain float32 generator, on real images, in the 8-bit levels test.py writes.

    python -m bench.inference_fidelity --run checkpoints/h2z --images datasets/horse2zebra/testA

Prints, per path: the largest and mean difference in 8-bit levels, the share of pixels that differ
and the PSNR against the float32 output; then the same as one line of JSON, where psnr_db is null
for outputs identical to float32's (infinite PSNR, which JSON cannot hold).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from data.image_folder import list_images, load_image  # noqa: E402
from data.transforms import to_tensor  # noqa: E402
from models import create_model  # noqa: E402
from models.networks import winograd  # noqa: E402
from options.test_options import TestOptions  # noqa: E402
from util.image import to_uint8  # noqa: E402


def translated_levels(run: Path, images: torch.Tensor, *, amp: bool, fast: bool) -> torch.Tensor:
    """8-bit translations by the run's latest generator as test.py computes them (`fast`), or with the
    plain float32 direct convolutions."""
    argv = ["--dataroot", str(REPO), "--checkpoints_dir", str(run.parent), "--name", run.name, "--gpu_ids", "-1"]
    opt = TestOptions().parse(argv + (["--amp"] if amp else []))
    model = create_model(opt, torch.device("cpu"))
    model.load_networks(run, "latest", ["G"])
    model.prepare_inference()
    with contextlib.nullcontext() if fast else winograd.disabled():
        return torch.from_numpy(to_uint8(torch.cat([model.translate(x[None]) for x in images]))).float()


def compare(reference: torch.Tensor, other: torch.Tensor) -> dict:
    """Differences of `other` from `reference` in 8-bit levels; psnr_db None where they are identical."""
    diff = (other - reference).abs()
    mse = (diff ** 2).mean().item()
    return {"max_levels": diff.max().item(), "mean_levels": diff.mean().item(),
            "pixels_differing": (diff > 0).float().mean().item(),
            "psnr_db": None if mse == 0 else 10 * torch.log10(torch.tensor(255.0 ** 2 / mse)).item()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a training run folder (checkpoints/NAME)")
    parser.add_argument("--images", required=True, help="folder of test images")
    parser.add_argument("--count", type=int, default=8, help="images compared")
    parser.add_argument("--size", type=int, default=256, help="images are resized to SIZE x SIZE")
    args = parser.parse_args(argv)
    paths = list_images(args.images)[:args.count]
    images = torch.stack([to_tensor(load_image(p, 3).resize((args.size, args.size)))
                          for p in paths])
    run = Path(args.run)
    reference = translated_levels(run, images, amp=False, fast=False)
    results = {"float32 + Winograd": compare(reference, translated_levels(run, images, amp=False, fast=True)),
               "--amp (bfloat16 weights)": compare(reference, translated_levels(run, images, amp=True, fast=True))}
    print(f"{len(paths)} images from {args.images} at {args.size} px, generator {run}/latest_net_G.pth")
    for name, r in results.items():
        psnr = "inf dB (identical)" if r["psnr_db"] is None else f"{r['psnr_db']:.1f} dB"
        print(f"{name:26s} max {r['max_levels']:.0f} level(s), mean {r['mean_levels']:.3f}, "
              f"{100 * r['pixels_differing']:.2f} % of values differ, PSNR {psnr}")
    print(json.dumps(results, allow_nan=False))  # strict JSON: an inf or nan fails here, not in a reader


if __name__ == "__main__":
    main()
