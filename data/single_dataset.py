"""One folder of images, translated in order (testing): DATAROOT/PHASEA, or PHASEB for BtoA."""
from __future__ import annotations

import argparse
from pathlib import Path

from torch.utils.data import Dataset

from data.image_folder import check_images, list_images, load_image
from data.transforms import min_source_size, preprocess


class SingleDataset(Dataset):
    """Deterministic preprocessing (centre crop, no flip); needs no training folders."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        return parser

    def __init__(self, opt: argparse.Namespace):
        self.opt = opt
        side = "B" if opt.direction == "BtoA" else "A"
        folder = Path(opt.dataroot) / f"{opt.phase}{side}"
        if Path(opt.dataroot, opt.phase).is_dir() and not folder.is_dir():
            folder = Path(opt.dataroot, opt.phase)  # a plain folder of images also works
        self.paths = list_images(folder, opt.max_dataset_size)
        check_images(self.paths, min_size=min_source_size(opt))
        self.channels = opt.input_nc  # the generator's input, whichever folder it comes from

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        image = preprocess(load_image(path, self.channels), self.opt, rng=None, path=path)
        return {"A": image, "A_paths": str(path)}
