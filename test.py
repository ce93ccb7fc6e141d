"""Translate a test split with a trained generator: image folders and an HTML page.

    python test.py --dataroot ./datasets/horse2zebra --name h2z

Writes RESULTS_DIR/NAME/PHASE_EPOCH/images/{real_A,fake_B}/<input name>.png and index.html.
Architecture options default to the training run's (checkpoints/NAME/train_opt.json).
"""
from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from data import create_dataset
from data.image_folder import DatasetError
from models import create_model
from options.test_options import TestOptions, differing_options_hint
from util.checkpoint import CheckpointError
from util.html import HTML
from util.image import save_png, to_uint8
from util.runtime import keep_freed_memory, select_device


def translate(opt: argparse.Namespace) -> Path:
    """Run the generator over the split; return the results folder."""
    device = select_device(opt.gpu_ids)
    dataset = create_dataset(opt)
    model = create_model(opt, device)
    run_dir = Path(opt.checkpoints_dir) / opt.name
    try:
        model.load_networks(run_dir, opt.epoch, ["G"])
    except CheckpointError as err:
        raise CheckpointError(f"{err}{differing_options_hint(opt)}") from err
    model.prepare_inference()

    count = int(min(opt.num_test, len(dataset)))
    subset = torch.utils.data.Subset(dataset, range(count))
    loader = DataLoader(subset, batch_size=opt.batch_size, shuffle=False, num_workers=opt.num_threads,
                        pin_memory=device.type == "cuda")
    out_dir = Path(opt.results_dir) / opt.name / f"{opt.phase}_{opt.epoch}"
    image_dirs = {kind: out_dir / "images" / kind for kind in ("real_A", "fake_B")}
    for folder in image_dirs.values():
        folder.mkdir(parents=True, exist_ok=True)

    names: list[str] = []
    pending = []
    with ThreadPoolExecutor(max_workers=2) as writer, tqdm(total=count, desc="translating", unit="img") as bar:
        for batch in loader:
            fake = model.translate(batch["A"])
            for kind, images in (("real_A", batch["A"]), ("fake_B", fake)):
                for path, pixels in zip(batch["A_paths"], to_uint8(images)):
                    pending.append(writer.submit(save_png, pixels, image_dirs[kind] / f"{Path(path).stem}.png"))
            names += [Path(p).stem for p in batch["A_paths"]]
            bar.update(len(batch["A_paths"]))
        for done in pending:
            done.result()  # surface write errors (disk full...) instead of dropping images

    page = HTML(out_dir, f"{opt.name}: {opt.phase} set, epoch {opt.epoch}")
    page.add_header(f"{opt.name} -- {opt.phase}, epoch {opt.epoch}, {count} images (input | translation)")
    for name in names:
        ims = [f"images/{kind}/{name}.png" for kind in image_dirs]
        page.add_images(ims, [f"{name} input", f"{name} translation"], ims, width=opt.display_winsize)
    page.save()
    return out_dir


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    options = TestOptions()
    opt = options.parse(argv)
    try:
        out_dir = translate(opt)
    except (DatasetError, CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"results: {out_dir / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
