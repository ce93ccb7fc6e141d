"""Measurements behind docs/using_a_trained_model.md: padding mode, tiled vs untiled, memory, video.

    python bench/full_resolution.py padding --run checkpoints/toy_demo
    python bench/full_resolution.py tiling  --run checkpoints/toy_demo --sizes 512 1024 --tile 256
    python bench/full_resolution.py memory  --run checkpoints/toy_demo --sizes 1024 2048 --tile 512 [--untiled]
    python bench/full_resolution.py memory  --run RUN --sizes 1024 2048 4096 8192 --tile 512 --final_pass_only
    python bench/full_resolution.py video   --run checkpoints/toy_demo --frames 48 --size 256

Test images are mosaics of the toy dataset's 64 px test images (--images), so that every region
holds content at the scale the generator was trained on. All runs use the CPU in float32.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from data.transforms import to_tensor  # noqa: E402
from models.tiling import TileGrid, blend_tiles  # noqa: E402
from models.translator import load_translator  # noqa: E402


def mosaic(side: int, *, folder: Path, seed: int = 0, width: int | None = None) -> Image.Image:
    """A side x width (default square) RGB image tiled from random images of `folder`."""
    width = width or side
    files = sorted(p for p in folder.iterdir() if p.suffix == ".png")
    rng = np.random.default_rng(seed)
    cells = [np.asarray(Image.open(f).convert("RGB")) for f in files[:64]]
    cell = cells[0].shape[0]
    rows = [np.concatenate([cells[rng.integers(len(cells))] for _ in range(-(-width // cell))], 1)
            for _ in range(-(-side // cell))]
    return Image.fromarray(np.concatenate(rows, 0)[:side, :width])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """dB, for images in [-1, 1] (peak-to-peak 2)."""
    return float(10 * torch.log10(4 / (a - b).pow(2).mean()))


def seam_contrast(image: torch.Tensor, cuts_y: list[int], cuts_x: list[int], band: int = 2) -> float:
    """Mean |gradient| across rows/columns within `band` px of the tile cuts, over the mean elsewhere."""
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=(0, 1, 3))  # per row boundary
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=(0, 1, 2))
    near_y = torch.zeros_like(dy, dtype=torch.bool)
    near_x = torch.zeros_like(dx, dtype=torch.bool)
    for cut in cuts_y:
        near_y[max(cut - band, 0):cut + band] = True
    for cut in cuts_x:
        near_x[max(cut - band, 0):cut + band] = True
    near = torch.cat([dy[near_y], dx[near_x]]).mean()
    far = torch.cat([dy[~near_y], dx[~near_x]]).mean()
    return float(near / far)


def cmd_padding(args: argparse.Namespace) -> list[dict]:
    """Error in the padded border band: crops whose sides are not multiples of 4, translated with
    each padding mode, against the crop extended to the next multiple with the image's real pixels
    (the larger-context translation), in the crop's region."""
    translate = load_translator(args.run, device="cpu")
    errors: dict[str, list[float]] = {"reflect": [], "replicate": []}
    for seed in range(args.images):
        full = to_tensor(mosaic(256, folder=args.images_dir, seed=seed))[None]
        for extra in (1, 2, 3):
            side = 124 + extra
            reference = translate(full[:, :, :128, :128])[:, :, :side, :side]
            for mode in errors:
                translate.pad_mode = mode
                errors[mode].append(_band_error(translate(full[:, :, :side, :side]), reference, args.band))
    return [{"padding": mode, "crops": len(values), "border_mae_levels": float(np.mean(values)),
             "border_max_levels": float(np.max(values))} for mode, values in errors.items()]


def _band_error(out: torch.Tensor, reference: torch.Tensor, band: int) -> float:
    """Mean |difference| in 8-bit levels over the bottom and right `band` px (where padding goes)."""
    diff = (out - reference).abs() * 127.5
    return float(torch.cat([diff[..., -band:, :].flatten(), diff[..., :-band, -band:].flatten()]).mean())


def cmd_tiling(args: argparse.Namespace) -> list[dict]:
    """PSNR and max difference of tiled vs untiled, and seam contrast: image-wide statistics
    (what the translator does) and, for comparison, tiles normalising themselves."""
    translate = load_translator(args.run, device="cpu")
    rows = []
    for side in args.sizes:
        image = to_tensor(mosaic(side, folder=args.images_dir, seed=side))[None]
        start = time.perf_counter()
        untiled = translate(image)
        untiled_s = time.perf_counter() - start
        translate.tile = translate.check_tile(args.tile)
        start = time.perf_counter()
        tiled = translate(image)
        tiled_s = time.perf_counter() - start
        grid = TileGrid(height=side, width=side, tile=translate.tile, overlap=translate.tile_overlap,
                        multiple=translate.multiple)
        with torch.inference_mode():
            per_tile = blend_tiles(translate.model.translate, image, grid=grid)
            hard = _hard_cut_tiles(translate.model.translate, image, grid)
        translate.tile = None
        cuts = [start for start, _ in grid.owned(side)][1:]
        for name, out in (("image-wide statistics", tiled), ("per-tile statistics", per_tile),
                          ("per-tile statistics, no blending", hard)):
            rows.append({"side": side, "tile": args.tile, "overlap": translate.tile_overlap, "norm": name,
                         "psnr_db": psnr(out, untiled), "max_diff_levels": float((out - untiled).abs().max() * 127.5),
                         "seam_contrast": seam_contrast(out, cuts, cuts),
                         "seam_contrast_untiled": seam_contrast(untiled, cuts, cuts),
                         "untiled_s": untiled_s, "tiled_s": tiled_s if name.startswith("image") else None})
        print(json.dumps(rows[-3:]), flush=True)
    return rows


def _hard_cut_tiles(forward, image: torch.Tensor, grid: TileGrid) -> torch.Tensor:
    """Each tile normalising itself and keeping only the part it owns: what seams look like."""
    out = torch.zeros_like(image)
    rows = dict(zip(grid.origins(grid.height), grid.owned(grid.height)))
    cols = dict(zip(grid.origins(grid.width), grid.owned(grid.width)))
    for top, bottom, left, right in grid.boxes():
        (y0, y1), (x0, x1) = rows[top], cols[left]
        result = forward(image[:, :, top:bottom, left:right])
        out[:, :, y0:y1, x0:x1] = result[:, :, y0 - top:y1 - top, x0 - left:x1 - left]
    return out


def cmd_memory(args: argparse.Namespace) -> list[dict]:
    """Peak resident memory (Linux VmHWM) while translating, per size, each in a fresh process:
    model and input image loaded first, then the peak is reset and the translation runs."""
    rows = []
    for side in args.sizes:
        child = [sys.executable, __file__, "_memory_child", "--run", str(args.run), "--side", str(side),
                 "--images_dir", str(args.images_dir)] + (["--tile", str(args.tile)] if not args.untiled else [])
        child += ["--final_pass_only"] if args.final_pass_only else []
        result = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        rows.append(result)
        print(json.dumps(result), flush=True)
    return rows


def _memory_mib(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def cmd_memory_child(args: argparse.Namespace) -> dict:
    translate = load_translator(args.run, device="cpu", tile=args.tile)
    image = to_tensor(mosaic(args.side, folder=args.images_dir, seed=1))[None]
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak: building the test image is not measured
    before = _memory_mib("VmRSS")
    start = time.perf_counter()
    if args.final_pass_only:
        _final_pass(translate, image)
    else:
        translate(image)
    return {"side": args.side, "tile": args.tile, "final_pass_only": args.final_pass_only,
            "ngf": translate.model.opt.ngf, "netG": translate.model.opt.netG,
            "peak_rss_mib": _memory_mib("VmHWM"), "before_translation_mib": before,
            "image_buffers_mib": 2 * image.numel() * 4 / 2**20, "seconds": time.perf_counter() - start}


def _final_pass(translate, image: torch.Tensor) -> None:
    """Only the last, translating pass of a tiled run, with statistics measured on a 512 px copy
    (values do not matter here). The output buffer exists only in this pass, so its peak is close
    to the whole run's (measured at 1k and 2k in the docs); measuring it alone makes 4k and 8k
    sides affordable on a CPU."""
    from tqdm import tqdm

    from models.tiling import _measure, image_wide_norms
    small = torch.nn.functional.interpolate(image, size=(512, 512), mode="area")
    small_grid = TileGrid(height=512, width=512, tile=512, overlap=0, multiple=translate.multiple)
    grid = TileGrid(height=image.shape[2], width=image.shape[3], tile=translate.tile, overlap=translate.tile_overlap,
                    multiple=translate.multiple)
    with torch.inference_mode(), image_wide_norms(translate.model.netG) as norms:
        for norm in norms:
            _measure(translate.model.translate, small, norm=norm, grid=small_grid, bar=tqdm(disable=True))
        blend_tiles(translate.model.translate, image, grid=grid)


def cmd_video(args: argparse.Namespace) -> list[dict]:
    """Frames per second and flicker of test.py --video on a generated clip: a slow pan over a mosaic."""
    import av

    from util.video import translate_video
    translate = load_translator(args.run, device="cpu")
    canvas = np.asarray(mosaic(args.size, folder=args.images_dir, seed=3, width=args.size + 2 * args.frames))
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.mp4"
        with av.open(str(source), "w") as container:
            stream = container.add_stream("libx264", rate=args.fps)
            stream.width, stream.height, stream.pix_fmt = args.size, args.size, "yuv420p"
            for index in range(args.frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(canvas[:, 2 * index:2 * index + args.size]),
                                                   format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        start = time.perf_counter()
        report = translate_video(translate, source, Path(tmp) / "out.mp4", progress=False)
        seconds = time.perf_counter() - start
    return [{"frames": report.frames, "size": args.size, "seconds": seconds, "frames_per_s": report.frames / seconds,
             "flicker_input": report.flicker_input, "flicker_output": report.flicker_output}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("padding", "tiling", "memory", "video", "_memory_child"))
    parser.add_argument("--run", type=Path, required=True, help="training run folder (checkpoints/NAME)")
    parser.add_argument("--images_dir", type=Path, default=REPO / "datasets" / "toy" / "testA",
                        help="small images the mosaics are made of")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="image sides (px)")
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--untiled", action="store_true", help="memory: untiled translation")
    parser.add_argument("--final_pass_only", action="store_true",
                        help="memory: run only the last (translating) pass of the tiled translation")
    parser.add_argument("--images", type=int, default=4, help="padding: mosaics to crop from")
    parser.add_argument("--band", type=int, default=4, help="padding: border band width (px)")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.command == "_memory_child":
        print(json.dumps(cmd_memory_child(args)))
        return
    rows = {"padding": cmd_padding, "tiling": cmd_tiling, "memory": cmd_memory, "video": cmd_video}[args.command](args)
    print(json.dumps(rows, indent=1))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
