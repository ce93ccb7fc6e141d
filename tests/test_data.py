"""Datasets (unaligned, single), --preprocess modes, flips, and the epoch-addressed sampler."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data import create_dataset
from data.image_folder import DatasetError
from data.sampler import EpochSampler
from data.transforms import preprocess
from options.test_options import TestOptions
from options.train_options import TrainOptions
from conftest import as_argv


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    """One RGB PNG per (width, height): left half black, right half white (a flip is visible)."""
    folder.mkdir(parents=True)
    paths = []
    for i, (width, height) in enumerate(sizes):
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
        pixels[:, width // 2:] = 255
        paths.append(folder / f"{i:02d}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


@pytest.fixture
def domains(tmp_path) -> Path:
    """trainA with 3 images, trainB with 5 (unequal, so pairing rules are visible), 16x16."""
    write_images(tmp_path / "trainA", [(16, 16)] * 3)
    write_images(tmp_path / "trainB", [(16, 16)] * 5)
    return tmp_path


def train_opt(dataroot: Path, **flags):
    # The pixel D trains on any image the generator takes: the small images here stay usable.
    return TrainOptions().parse(as_argv({"dataroot": dataroot, "load_size": 16, "crop_size": 16, "netD": "pixel",
                                         **flags}))


def names(paths) -> list[str]:
    return [f"{Path(p).parent.name}/{Path(p).name}" for p in paths]


def test_unaligned_pairs_a_in_order_and_b_at_random_but_reproducibly(domains):
    dataset = create_dataset(train_opt(domains))
    assert len(dataset) == 5  # max(|A|, |B|)
    items = [dataset[(1, i)] for i in range(5)]
    assert names(item["A_paths"] for item in items) == [f"trainA/0{i % 3}.png" for i in range(5)]
    again = dataset[(1, 3)]
    assert again["B_paths"] == items[3]["B_paths"]
    assert torch.equal(again["A"], items[3]["A"]) and torch.equal(again["B"], items[3]["B"])
    partners = {epoch: [dataset[(epoch, i)]["B_paths"] for i in range(5)] for epoch in range(1, 6)}
    assert len(set(map(tuple, partners.values()))) > 1  # a new draw each epoch
    assert len({p for draw in partners.values() for p in draw}) > 2  # drawn from all of B, not B[i]
    other_seed = create_dataset(train_opt(domains, seed=1))
    assert [other_seed[(e, i)]["B_paths"] for e in range(1, 6) for i in range(5)] != \
        [p for e in range(1, 6) for p in partners[e]]


def test_serial_batches_pair_b_by_index(domains):
    dataset = create_dataset(train_opt(domains, serial_batches=True))
    assert names(dataset[(7, i)]["B_paths"] for i in range(5)) == [f"trainB/0{i}.png" for i in range(5)]
    assert names(dataset[(7, i)]["A_paths"] for i in range(5)) == [f"trainA/0{i % 3}.png" for i in range(5)]


def test_btoa_swaps_domains_and_channels(domains):
    """With BtoA the model's input ("A") comes from trainB and has --input_nc channels, as in CUT."""
    dataset = create_dataset(train_opt(domains, direction="BtoA", serial_batches=True, input_nc=1))
    item = dataset[(1, 4)]
    assert names([item["A_paths"], item["B_paths"]]) == ["trainB/04.png", "trainA/01.png"]
    assert item["A"].shape == (1, 16, 16) and item["B"].shape == (3, 16, 16)


def test_grayscale_input_and_value_range(domains):
    dataset = create_dataset(train_opt(domains, input_nc=1, no_flip=True))
    item = dataset[(1, 0)]
    assert item["A"].shape == (1, 16, 16) and item["B"].shape == (3, 16, 16)
    for image in (item["A"], item["B"]):
        assert image.min().item() == -1.0 and image.max().item() == 1.0  # black and white
        assert image.dtype == torch.float32


@pytest.mark.parametrize("mode,crop_size,expected_hw", [
    ("resize_and_crop", 16, (16, 16)),
    ("crop", 16, (16, 16)),
    ("scale_width", 12, (14, 32)),  # width to load_size, aspect kept: 45x21 -> 32x14(.9)
    ("scale_width", 20, (20, 32)),  # ... but never below crop_size
    ("scale_width_and_crop", 12, (12, 12)),
    ("none", 16, (20, 44)),  # training: sides rounded to multiples of 4; testing keeps 21x45 (the translator pads)
])
def test_preprocess_output_size(tmp_path, mode, crop_size, expected_hw):
    (path,) = write_images(tmp_path / "img", [(45, 21)])
    opt = train_opt(tmp_path, preprocess=mode, load_size=32, crop_size=crop_size)
    for rng in (np.random.default_rng(0), None):  # training (random crop) and testing (centre crop)
        image = preprocess(Image.open(path).convert("RGB"), opt, rng=rng)
        assert tuple(image.shape) == (3, *((21, 45) if mode == "none" and rng is None else expected_hw))


def is_flipped(image: torch.Tensor) -> bool:
    return bool(image[0, 0, 0] > 0)  # the left edge was black


def test_flip_only_when_training_and_allowed(tmp_path):
    (path,) = write_images(tmp_path / "img", [(16, 16)])
    img = Image.open(path).convert("RGB")
    opt = train_opt(tmp_path)
    flips = [is_flipped(preprocess(img, opt, rng=np.random.default_rng(seed))) for seed in range(20)]
    assert 0 < sum(flips) < 20
    assert flips == [is_flipped(preprocess(img, opt, rng=np.random.default_rng(seed))) for seed in range(20)]
    no_flip = train_opt(tmp_path, no_flip=True)
    assert not any(is_flipped(preprocess(img, no_flip, rng=np.random.default_rng(seed))) for seed in range(20))
    assert not is_flipped(preprocess(img, opt, rng=None))  # testing


def test_single_dataset_needs_only_the_test_folder(tmp_path):
    write_images(tmp_path / "data" / "testA", [(20, 20)] * 2)
    write_images(tmp_path / "data" / "testB", [(20, 20)] * 3)
    argv = as_argv({"dataroot": tmp_path / "data", "checkpoints_dir": tmp_path / "none", "crop_size": 16,
                    "load_size": 16})
    dataset = create_dataset(TestOptions().parse(argv))
    assert len(dataset) == 2 and names([dataset[1]["A_paths"]]) == ["testA/01.png"]
    assert dataset[1]["A"].shape == (3, 16, 16) and torch.equal(dataset[1]["A"], dataset[1]["A"])
    assert not is_flipped(dataset[0]["A"])
    btoa = create_dataset(TestOptions().parse(argv + ["--direction", "BtoA", "--input_nc", "1"]))
    assert len(btoa) == 3 and btoa[0]["A"].shape == (1, 16, 16)


def keys(sampler: EpochSampler, epoch: int, skip: int = 0) -> list[int]:
    sampler.start(epoch, skip)
    return [index for _, index in sampler]


def test_sampler_order_depends_on_epoch_and_seed_only():
    sampler = EpochSampler(10, batch_size=3, seed=0, shuffle=True)
    assert sampler.batches_per_epoch == 3  # whole batches only
    first = keys(sampler, 1)
    assert len(first) == len(set(first)) == 9 and len(sampler) == 9
    assert keys(sampler, 1) == first
    assert keys(EpochSampler(10, batch_size=3, seed=0, shuffle=True), 1) == first
    assert keys(sampler, 2) != first
    assert keys(EpochSampler(10, batch_size=3, seed=1, shuffle=True), 1) != first
    sampler.start(4)
    assert {epoch for epoch, _ in sampler} == {4}  # items are addressed as (epoch, index)
    assert keys(EpochSampler(10, batch_size=3, seed=0, shuffle=False), 5) == list(range(9))


def test_sampler_skip_batches_resumes_mid_epoch():
    sampler = EpochSampler(10, batch_size=2, seed=3, shuffle=True)
    full = keys(sampler, 2)
    assert keys(sampler, 2, skip=3) == full[6:]
    assert len(sampler) == 4
    assert keys(sampler, 2, skip=5) == []


def test_sampler_split_across_processes_is_disjoint_and_equal():
    shares = [keys(EpochSampler(11, batch_size=2, seed=0, shuffle=True, rank=r, world_size=3), 1) for r in range(3)]
    assert [len(s) for s in shares] == [2, 2, 2]  # 11 // 3 = 3 per process -> one whole batch of 2
    assert len(set().union(*shares)) == 6
    with pytest.raises(ValueError, match="--batch_size"):
        EpochSampler(3, batch_size=2, seed=0, shuffle=True, world_size=2)


def test_single_dataset_reads_a_plain_folder_of_images_as_in_cut(tmp_path):
    write_images(tmp_path / "horse2zebra" / "testA", [(20, 20)] * 2)
    write_images(tmp_path / "horse2zebra" / "testB", [(20, 20)] * 3)
    write_images(tmp_path / "photos" / "2020", [(20, 20)] * 2)  # nested, as CUT's recursive listing allows
    write_images(tmp_path / "photos" / "2021", [(20, 20)])

    def listed(dataroot: Path, *flags: str) -> list[str]:
        argv = as_argv({"dataroot": dataroot, "checkpoints_dir": tmp_path / "none", "crop_size": 16,
                        "load_size": 16}) + list(flags)
        dataset = create_dataset(TestOptions().parse(argv))
        return names(dataset[i]["A_paths"] for i in range(len(dataset)))

    assert listed(tmp_path / "horse2zebra" / "testA") == ["testA/00.png", "testA/01.png"]  # CUT's form
    assert listed(tmp_path / "horse2zebra") == ["testA/00.png", "testA/01.png"]  # a dataset folder
    assert len(listed(tmp_path / "horse2zebra", "--direction", "BtoA")) == 3
    assert listed(tmp_path / "photos") == ["2020/00.png", "2020/01.png", "2021/00.png"]


@pytest.mark.parametrize("layout, detail", [
    ("missing", "it does not exist"),
    ("a file", "it is a file, not a folder"),
    ("training splits only", "it has trainA, trainB but no testA"),
    ("no images", "it holds no image files"),
])
def test_single_dataset_errors_name_both_forms_of_dataroot(tmp_path, layout, detail):
    root = tmp_path / "data"
    if layout == "training splits only":
        write_images(root / "trainA", [(20, 20)])
        write_images(root / "trainB", [(20, 20)])
    elif layout == "a file":
        root.write_bytes(b"")
    elif layout == "no images":
        root.mkdir()
        (root / "notes.txt").write_text("no images here")
    opt = TestOptions().parse(as_argv({"dataroot": root, "checkpoints_dir": tmp_path / "none"}))
    with pytest.raises(DatasetError) as caught:
        create_dataset(opt)
    message = str(caught.value)
    assert f"no images to translate in --dataroot {root}: {detail}" in message
    assert "pass a folder of images (e.g. --dataroot datasets/horse2zebra/testA, as in CUT)" in message
    assert "or a dataset folder with a testA subfolder (e.g. --dataroot datasets/horse2zebra)" in message


@pytest.mark.parametrize("preprocess", ["none", "scale_width"])
def test_images_of_several_sizes_in_one_batch_are_refused_naming_preprocess_and_batch_size(tmp_path, preprocess):
    write_images(tmp_path / "trainA", [(16, 16), (16, 24)])
    write_images(tmp_path / "trainB", [(20, 20)] * 2)
    assert len(create_dataset(train_opt(tmp_path, preprocess=preprocess))) == 2  # batch size 1: fine
    assert len(create_dataset(train_opt(tmp_path, preprocess="resize_and_crop", batch_size=2))) == 2
    with pytest.raises(DatasetError) as caught:
        create_dataset(train_opt(tmp_path, preprocess=preprocess, batch_size=2))
    assert (f"--batch_size 2 stacks images into one tensor, but --preprocess {preprocess} keeps each image's "
            in str(caught.value))
    assert "trainA/00.png becomes 16x16" in str(caught.value) and "use --batch_size 1" in str(caught.value)


@pytest.mark.parametrize("preprocess, size, becomes, fix", [
    ("none", (14, 14), "16x16", "upscale the file, or use --preprocess resize_and_crop"),
    ("scale_width", (96, 14), "24x16", "raise --load_size and --crop_size to 24 or more"),
])
def test_images_smaller_than_the_discriminator_takes_are_listed_before_training(tmp_path, preprocess, size,
                                                                                becomes, fix):
    fine, small = write_images(tmp_path / "trainA", [(24, 24), size])
    write_images(tmp_path / "trainB", [(24, 24)])
    flags = {"preprocess": preprocess, "netD": "basic", "load_size": 24, "crop_size": 16}
    assert len(create_dataset(train_opt(tmp_path, **flags, max_dataset_size=1))) == 1  # the small one left out
    with pytest.raises(DatasetError) as caught:
        create_dataset(train_opt(tmp_path, **flags))
    message = str(caught.value)
    assert message.startswith("1 of 3 image files cannot be used:") and str(fine) not in message
    assert (f"{small}: {size[0]}x{size[1]} becomes {becomes} with --preprocess {preprocess}, smaller than 24 px, "
            f"the smallest side --netD basic with --normD instance takes: {fix}") in message
    assert len(create_dataset(train_opt(tmp_path, **{**flags, "netD": "pixel"}))) == 2  # G alone takes 8 px
