"""Translate a test split with a trained generator: image folders and an HTML page; or a video.

    python test.py --dataroot ./datasets/horse2zebra --name h2z
    python test.py --dataroot photos --name h2z --preprocess none --tile 512    # full size, tiled
    python test.py --name h2z --video horse.mp4 --out zebra.mp4

Writes RESULTS_DIR/NAME/PHASE_EPOCH/images/{real_A,fake_B}/<input name>.png, real_B/<input name>.png
(the target domain's image of the same index, cycled, for comparison; when DATAROOT/PHASEB exists)
and index.html.
Architecture options default to the training run's (checkpoints/NAME/train_opt.json, or the
train_opt.txt that the reference CUT code writes). Translation goes through models.translator, the same
code as the Python API (docs/using_a_trained_model.md).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data import create_dataset
from data.image_folder import DatasetError
from data.single_dataset import SingleDataset
from models.tiling import TileError
from models.translator import InferenceMemoryError, build_translator
from options.test_options import TestOptions, require_dataroot
from util.checkpoint import CheckpointError
from util.image import save_png, stretch, to_uint8
from util.results_page import SCORE_JSON, write_results_page
from util.runtime import keep_freed_memory


def reference_images(opt: argparse.Namespace) -> SingleDataset | None:
    """The target domain's images (DATAROOT/PHASEB, or PHASEA for BtoA), preprocessed as the
    inputs are, or None when the dataset has no such folder."""
    side = "A" if opt.direction == "BtoA" else "B"
    if not (Path(opt.dataroot) / f"{opt.phase}{side}").is_dir():
        return None
    # batch_size 1: read one at a time, so --preprocess none may give them several sizes
    flipped = {"direction": "AtoB" if side == "A" else "BtoA", "input_nc": opt.output_nc, "batch_size": 1}
    return SingleDataset(argparse.Namespace(**{**vars(opt), **flipped}))


def output_name(path: str | Path) -> str:
    """The file name an input's images get in every results folder: its name without folder or extension."""
    return f"{Path(path).stem}.png"


def check_output_names(paths: list[Path]) -> None:
    """Refuse inputs whose outputs would overwrite each other (0001.png and 0001.jpg, a/x.png and b/x.png):
    no renaming scheme is one a user would guess, so they choose."""
    by_name: dict[str, list[Path]] = {}
    for path in paths:
        by_name.setdefault(output_name(path), []).append(path)
    clashes = [f"  {name} <- {', '.join(map(str, inputs))}" for name, inputs in by_name.items() if len(inputs) > 1]
    if clashes:
        raise DatasetError(f"{len(clashes)} output name(s) would be shared by several inputs (outputs are named "
                           "after the input's file name, without its folder and extension):\n" + "\n".join(clashes)
                           + "\nrename these inputs, or give each group its own folder and --dataroot, then run again")


def translate(opt: argparse.Namespace) -> Path:
    """Run the generator over the split; return the results folder. Every check runs before the
    previous results are cleared."""
    require_dataroot(opt)
    dataset = create_dataset(opt)
    translator = build_translator(opt, progress=True)
    device = translator.device

    count = int(min(opt.num_test, len(dataset)))
    check_output_names(dataset.paths[:count])
    subset = torch.utils.data.Subset(dataset, range(count))
    loader = DataLoader(subset, batch_size=opt.batch_size, shuffle=False, num_workers=opt.num_threads,
                        pin_memory=device.type == "cuda")
    references = reference_images(opt)
    out_dir = Path(opt.results_dir) / opt.name / f"{opt.phase}_{opt.epoch}"
    image_dirs = {kind: out_dir / "images" / kind for kind in ("real_A", "fake_B", "real_B")}
    # A previous run's images and score would otherwise mix with this run's on the page.
    (out_dir / SCORE_JSON).unlink(missing_ok=True)
    for kind, folder in image_dirs.items():
        shutil.rmtree(folder, ignore_errors=True)
        if kind != "real_B" or references is not None:
            folder.mkdir(parents=True)

    names: list[str] = []
    pending = []
    with ThreadPoolExecutor(max_workers=2) as writer, tqdm(total=count, desc="translating", unit="img") as bar:
        for batch in loader:
            fake = translator(batch["A"])
            for kind, images in (("real_A", batch["A"]), ("fake_B", fake)):
                for path, pixels in zip(batch["A_paths"], to_uint8(images)):
                    pending.append(writer.submit(save_png, stretch(pixels, opt.aspect_ratio),
                                                 image_dirs[kind] / output_name(path)))
            for path in batch["A_paths"]:
                if references is not None:
                    reference = references[len(names) % len(references)]["A"]
                    pending.append(writer.submit(save_png, stretch(to_uint8(reference[None])[0], opt.aspect_ratio),
                                                 image_dirs["real_B"] / output_name(path)))
                names.append(Path(path).stem)
            bar.update(len(batch["A_paths"]))
        for done in pending:
            done.result()  # surface write errors (disk full...) instead of dropping images

    write_results_page(out_dir, width=opt.display_winsize)
    return out_dir


def translate_video_file(opt: argparse.Namespace) -> int:
    """--video IN --out OUT: every frame translated, size, frame rate, frame count and audio kept.
    Returns the exit status (2 with a message for an unreadable video or an unknown codec)."""
    # Imported here: PyAV is needed for videos only, not to translate a folder of images.
    from util.video import VideoError, translate_video

    translator = build_translator(opt)
    try:
        report = translate_video(translator, opt.video, opt.out, channels=opt.input_nc, codec=opt.video_codec)
    except VideoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{opt.out}: {report.frames} frames, {report.width}x{report.height}, {float(report.frame_rate):.3g} fps, "
          f"{report.audio_streams} audio stream(s) copied; flicker (mean change between frames, 0-255): input "
          f"{report.flicker_input:.2f}, output {report.flicker_output:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    options = TestOptions()
    opt = options.parse(argv)
    try:
        if opt.video is not None:
            return translate_video_file(opt)
        out_dir = translate(opt)
    except (DatasetError, CheckpointError, FileNotFoundError, TileError, InferenceMemoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"results: {out_dir / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
