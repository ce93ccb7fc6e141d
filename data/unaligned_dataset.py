"""Unpaired images from DATAROOT/PHASEA and DATAROOT/PHASEB (CUT's unaligned mode)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from data.image_folder import DatasetError, check_images, list_images, load_image, not_a_folder
from data.transforms import check_batchable, preprocess, size_check


class UnalignedDataset(Dataset):
    """Item i pairs A[i % |A|] with a B image drawn at random (or B[i % |B|] with --serial_batches).

    Items are addressed as (epoch, index): all randomness (the B partner, crops, flips) is drawn
    from a generator seeded by (seed, epoch, index), so data is identical across workers,
    processes and resumes.
    """

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        return parser

    def __init__(self, opt: argparse.Namespace):
        self.opt = opt
        root = Path(opt.dataroot)
        problem = not_a_folder(root)
        if problem:
            raise DatasetError(f"--dataroot {root} {problem}; make a dataset "
                               "(python datasets/make_toy_dataset.py) or point --dataroot at one")
        self.paths_A = list_images(root / f"{opt.phase}A", opt.max_dataset_size)
        self.paths_B = list_images(root / f"{opt.phase}B", opt.max_dataset_size)
        check_images(self.paths_A + self.paths_B, size_problem=size_check(opt, discriminator=True))
        for paths in (self.paths_A, self.paths_B):  # A and B may differ in size: G and D see them apart
            check_batchable(paths, opt)
        if opt.direction == "BtoA":
            self.paths_A, self.paths_B = self.paths_B, self.paths_A
        # "A" is the generator's input whichever folder it comes from (G has --input_nc channels).
        self.nc_A, self.nc_B = opt.input_nc, opt.output_nc

    def __len__(self) -> int:
        return max(len(self.paths_A), len(self.paths_B))

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        rng = np.random.default_rng((self.opt.seed, epoch, index))
        path_A = self.paths_A[index % len(self.paths_A)]
        if self.opt.serial_batches:
            path_B = self.paths_B[index % len(self.paths_B)]
        else:
            path_B = self.paths_B[int(rng.integers(len(self.paths_B)))]
        A = preprocess(load_image(path_A, self.nc_A), self.opt, rng=rng, path=path_A)
        B = preprocess(load_image(path_B, self.nc_B), self.opt, rng=rng, path=path_B)
        return {"A": A, "B": B, "A_paths": str(path_A), "B_paths": str(path_B)}
