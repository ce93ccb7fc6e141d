"""Every flag and choice of the reference CUT's option parsers (taesungp/contrastive-unpaired-translation
at b3ac297, options/*.py and models/cut_model.py), and CycleGAN's test flag --aspect_ratio, is
accepted with the reference's meaning; choices whose networks are not built stop with a clear
error, never argparse's bare "invalid choice"."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import train
from conftest import load_test_script
from models.base_model import lr_factor
from options.test_options import TestOptions
from options.train_options import TrainOptions
from util.image import stretch

test_script = load_test_script()

# The reference's flags, written out from its parsers: flag -> an example value (None: a bare switch).
REFERENCE_BASE_FLAGS = {
    "dataroot": "somewhere", "name": "run", "easy_label": "a label", "gpu_ids": "-1", "checkpoints_dir": "ck",
    "model": "cut", "input_nc": "3", "output_nc": "3", "ngf": "32", "ndf": "32", "netD": "n_layers",
    "netG": "resnet_6blocks", "n_layers_D": "2", "normG": "batch", "normD": "none", "init_type": "normal",
    "init_gain": "0.05", "no_dropout": "False", "no_antialias": None, "no_antialias_up": None,
    "dataset_mode": "unaligned", "direction": "BtoA", "serial_batches": None, "num_threads": "0",
    "batch_size": "2", "load_size": "128", "crop_size": "64", "max_dataset_size": "10",
    "preprocess": "scale_width_and_crop", "no_flip": None, "display_winsize": "128", "random_scale_max": "2.5",
    "epoch": "7", "verbose": None, "suffix": "s", "stylegan2_G_num_downsampling": "2",
}
REFERENCE_TRAIN_FLAGS = {
    "display_freq": "10", "display_ncols": "2", "display_id": "0", "display_server": "http://localhost",
    "display_env": "env", "display_port": "8000", "update_html_freq": "10", "print_freq": "10", "no_html": None,
    "save_latest_freq": "10", "save_epoch_freq": "2", "evaluation_freq": "100", "save_by_iter": None,
    "continue_train": None, "epoch_count": "3", "phase": "val", "pretrained_name": "other_run", "n_epochs": "3",
    "n_epochs_decay": "2", "beta1": "0.4", "beta2": "0.99", "lr": "0.001", "gan_mode": "vanilla",
    "pool_size": "0", "lr_policy": "step", "lr_decay_iters": "10",
}
REFERENCE_TEST_FLAGS = {"results_dir": "res", "phase": "val", "eval": None, "num_test": "5",
                        "aspect_ratio": "2.0"}  # the last one is CycleGAN's
REFERENCE_CUT_MODEL_FLAGS = {
    "CUT_mode": "FastCUT", "lambda_GAN": "2.0", "lambda_NCE": "3.0", "nce_idt": "True", "nce_layers": "0,4",
    "nce_includes_all_negatives_from_minibatch": "True", "netF": "sample", "netF_nc": "64", "nce_T": "0.1",
    "num_patches": "64", "flip_equivariance": "False",
}
# Every choice the reference lists, per flag, and those whose network or dataset is not built here.
REFERENCE_CHOICES = {
    "netD": ["basic", "n_layers", "pixel", "patch", "tilestylegan2", "stylegan2"],
    "netG": ["resnet_9blocks", "resnet_6blocks", "unet_256", "unet_128", "stylegan2", "smallstylegan2", "resnet_cat"],
    "netF": ["sample", "reshape", "mlp_sample"],
    "normG": ["instance", "batch", "none"], "normD": ["instance", "batch", "none"],
    "init_type": ["normal", "xavier", "kaiming", "orthogonal"],
    "CUT_mode": ["CUT", "cut", "FastCUT", "fastcut"],
    "gan_mode": ["vanilla", "lsgan", "wgangp", "nonsaturating"],
    "lr_policy": ["linear", "step", "plateau", "cosine"],
    "preprocess": ["resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none", "zoom_and_patch"],
    "direction": ["AtoB", "BtoA"],
    "model": ["cut", "sincut", "cycle_gan", "template", "test"],  # models/*_model.py; test: CycleGAN's test.py
    "dataset_mode": ["unaligned", "single", "singleimage", "template"],  # data/*_dataset.py
}
# Those that stop, with the reason the error gives.
LATER = "not built yet"
UNAVAILABLE = {
    ("netD", "tilestylegan2"): LATER, ("netD", "stylegan2"): LATER, ("netG", "unet_256"): LATER,
    ("netG", "unet_128"): LATER, ("netG", "stylegan2"): LATER, ("netG", "smallstylegan2"): LATER,
    ("netG", "resnet_cat"): LATER, ("netF", "reshape"): LATER, ("preprocess", "zoom_and_patch"): LATER,
    ("model", "sincut"): LATER, ("model", "cycle_gan"): LATER, ("dataset_mode", "singleimage"): LATER,
    ("netD", "patch"): "the reference lists it but builds no network for it",
    ("model", "template"): "an example for writing new models", ("dataset_mode", "template"): "an example",
    ("model", "test"): "test.py always runs only the generator",
}


def argv_of(flags: dict[str, str | None]) -> list[str]:
    return [token for flag, value in flags.items() for token in ([f"--{flag}"] + ([] if value is None else [value]))]


def parser_flags(options) -> set[str]:
    return {s[2:] for action in options.parser._actions for s in action.option_strings if s.startswith("--")}


@pytest.mark.parametrize("options_class, reference_flags", [
    (TrainOptions, {**REFERENCE_BASE_FLAGS, **REFERENCE_TRAIN_FLAGS, **REFERENCE_CUT_MODEL_FLAGS}),
    (TestOptions, {**REFERENCE_BASE_FLAGS, **REFERENCE_TEST_FLAGS, **REFERENCE_CUT_MODEL_FLAGS}),
])
def test_every_reference_flag_parses_with_its_value(options_class, reference_flags, tmp_path, capsys):
    flags = {**reference_flags, "checkpoints_dir": str(tmp_path)}
    options = options_class()
    opt = options.parse(argv_of(flags))
    assert set(reference_flags) <= parser_flags(options)
    for flag, value in flags.items():
        parsed = getattr(opt, flag)
        if flag == "name":
            assert parsed == "run_s"  # --suffix s appended, as in CUT
        elif value is None:
            assert parsed is True, flag
        elif isinstance(parsed, bool):
            assert parsed is (value == "True"), flag
        elif isinstance(parsed, (int, float)):
            assert parsed == type(parsed)(value), flag
        else:
            assert parsed == value, flag
    capsys.readouterr()


@pytest.mark.parametrize("options_class, flag, value", [
    (options_class, flag, value) for options_class in (TrainOptions, TestOptions)
    for flag, values in REFERENCE_CHOICES.items() for value in values
    if options_class is TrainOptions or flag not in REFERENCE_TRAIN_FLAGS])
def test_every_reference_choice_parses_or_says_it_is_not_available(options_class, flag, value, tmp_path, capsys):
    argv = ["--checkpoints_dir", str(tmp_path), f"--{flag}", value]
    if (flag, value) not in UNAVAILABLE:
        assert getattr(options_class().parse(argv), flag) == value
        return
    with pytest.raises(SystemExit) as exit_info:
        options_class().parse(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "invalid choice" not in err
    assert f"error: --{flag} {value}: " in err and UNAVAILABLE[flag, value] in err and "; use --" in err


def test_help_lists_the_unavailable_choices_and_why(capsys):
    with pytest.raises(SystemExit):
        TrainOptions().parse(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "unet_128, unet_256, stylegan2, smallstylegan2, resnet_cat: the reference CUT's, not available" in out


def test_pool_size_has_no_effect_on_cut_as_in_the_reference(capsys):
    assert TrainOptions().parse(["--pool_size", "50"]).pool_size == 50
    assert "--pool_size 50 has no effect" in capsys.readouterr().err


def test_plateau_policy_is_cuts_reduce_on_plateau_with_its_constant_metric():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=2e-4)
    # CUT: ReduceLROnPlateau(mode='min', factor=0.2, threshold=0.01, patience=5), stepped after each epoch with 0
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.2, threshold=0.01,
                                                           patience=5)
    for epoch in range(1, 45):
        expected = optimizer.param_groups[0]["lr"]
        factor = lr_factor(policy="plateau", epoch=epoch, n_epochs=10, n_epochs_decay=10, decay_every=50)
        assert 2e-4 * factor == pytest.approx(expected, rel=1e-9), epoch
        scheduler.step(0)


@pytest.mark.parametrize("ratio, size", [(2.0, (8, 16)), (0.5, (16, 8)), (1.0, (8, 8))])
def test_aspect_ratio_stretches_saved_images_as_cyclegan_does(ratio, size):
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    out = stretch(pixels, ratio)
    assert (out.shape[1], out.shape[0]) == size and out.shape[2] == 3
    grey = stretch(np.zeros((8, 8, 1), dtype=np.uint8), ratio)
    assert grey.shape[2] == 1


def run_test_py(argv: list[str], tmp_path, *flags: str) -> int:
    """test.py on the tiny run that `argv` trained, results in tmp_path/results."""
    return test_script.main(argv[:6] + ["--num_threads", "0", "--results_dir", str(tmp_path / "results"), *flags])


def test_aspect_ratio_end_to_end(tiny_train_args, tmp_path, capsys):
    argv = tiny_train_args(max_dataset_size=1)
    assert train.main(argv) == 0
    assert run_test_py(argv, tmp_path, "--aspect_ratio", "2") == 0
    fakes = tmp_path / "results" / "tiny" / "test_latest" / "images" / "fake_B"
    assert {Image.open(path).size for path in fakes.iterdir()} == {(32, 64)}  # width 32, height 2 x 32
    capsys.readouterr()


def test_unaligned_test_mode_translates_as_cuts_test_py_does(tiny_trained_run, toy_dataroot, tmp_path, capsys):
    """CUT's test.py defaults to --dataset_mode unaligned (testA translated, testB shown beside it)."""
    checkpoints, name = tiny_trained_run
    results = tmp_path / "results"
    assert test_script.main(["--dataroot", str(toy_dataroot), "--checkpoints_dir", str(checkpoints), "--name", name,
                             "--num_threads", "0", "--results_dir", str(results), "--num_test", "2",
                             "--dataset_mode", "unaligned"]) == 0
    images = results / name / "test_latest" / "images"
    assert sorted(p.name for p in (images / "fake_B").iterdir()) == ["0000.png", "0001.png"]
    assert len(list((images / "real_B").iterdir())) == 2
    capsys.readouterr()


def test_save_by_iter_names_the_periodic_checkpoints_by_iteration(tiny_train_args, tmp_path):
    argv = tiny_train_args(max_dataset_size=3, save_latest_freq=2, save_by_iter=True)
    assert train.main(argv) == 0
    run = tmp_path / "checkpoints" / "tiny"
    assert (run / "iter_2_net_G.pth").is_file() and (run / "iter_2_state.pth").is_file()
    assert run_test_py(argv, tmp_path, "--epoch", "iter_2") == 0


def test_num_threads_default_follows_the_cores_so_torch_does_not_warn(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)  # a 2-core machine
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    train_opt, test_opt = TrainOptions().parse([]), TestOptions().parse([])
    assert (train_opt.num_threads, test_opt.num_threads) == (2, 2)
    for opt in (train_opt, test_opt):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch's "excessive worker creation" is a UserWarning
            DataLoader(range(4), num_workers=opt.num_threads).check_worker_number_rationality()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert TrainOptions().parse([]).num_threads == 4  # CUT's default where the machine has the cores
