"""One folder of images, translated in order (testing): the --dataroot folder itself, as in CUT
and CycleGAN, or a dataset's DATAROOT/PHASEA (PHASEB for BtoA)."""
from __future__ import annotations

import argparse
from pathlib import Path

from torch.utils.data import Dataset

from data.image_folder import DatasetError, check_images, list_images, load_image, not_a_folder
from data.transforms import check_batchable, preprocess, size_check


def split_name(opt: argparse.Namespace) -> str:
    """The dataset subfolder a single-folder run reads: PHASEA, or PHASEB with --direction BtoA."""
    return f"{opt.phase}{'B' if opt.direction == 'BtoA' else 'A'}"


def image_folder(opt: argparse.Namespace) -> Path:
    """DATAROOT/PHASEA (PHASEB for BtoA) or DATAROOT/PHASE when the dataset has one, else DATAROOT.

    A DATAROOT with training or test splits but not this one is refused rather than read whole
    (that would translate both domains' training images)."""
    root, split = Path(opt.dataroot), split_name(opt)
    for folder in (root / split, root / opt.phase):
        if folder.is_dir():
            return folder
    problem = not_a_folder(root)
    if problem:
        raise DatasetError(no_images_message(opt, f"it {problem}"))
    splits = sorted(name for name in {f"{phase}{side}" for phase in ("train", "test", "val", opt.phase)
                                      for side in "AB"} if (root / name).is_dir())
    if splits:
        raise DatasetError(no_images_message(opt, f"it has {', '.join(splits)} but no {split}"))
    return root


def no_images_message(opt: argparse.Namespace, detail: str) -> str:
    """Why --dataroot gave nothing to translate, naming both forms it may take."""
    split = split_name(opt)
    return (f"no images to translate in --dataroot {opt.dataroot}: {detail} -- with --dataset_mode single, pass "
            f"a folder of images (e.g. --dataroot datasets/horse2zebra/{split}, as in CUT) or a dataset folder "
            f"with a {split} subfolder (e.g. --dataroot datasets/horse2zebra)")


class SingleDataset(Dataset):
    """Deterministic preprocessing (centre crop, no flip); needs no training folders."""

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        return parser

    def __init__(self, opt: argparse.Namespace):
        self.opt = opt
        folder = image_folder(opt)
        try:
            self.paths = list_images(folder, opt.max_dataset_size)
        except DatasetError as err:
            if folder != Path(opt.dataroot):
                raise
            raise DatasetError(no_images_message(opt, "it holds no image files")) from err
        check_images(self.paths, size_problem=size_check(opt, discriminator=False))
        check_batchable(self.paths, opt)
        self.channels = opt.input_nc  # the generator's input, whichever folder it comes from

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        image = preprocess(load_image(path, self.channels), self.opt, rng=None, path=path)
        return {"A": image, "A_paths": str(path)}
