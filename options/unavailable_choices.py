"""Choices the reference CUT (and CycleGAN's test.py) accept that this project does not offer.

Users' scripts pass them, so argparse accepts them (no bare "invalid choice"); then the run
stops before any work with the reason and what to use instead. Networks and datasets not
built yet are listed here until they are.
"""
from __future__ import annotations

import argparse
from typing import Callable

_LATER = "not built yet in this project"

# flag -> {value: why it is unavailable}; INSTEAD says what to use.
UNAVAILABLE: dict[str, dict[str, str]] = {
    "model": {
        "sincut": f"SinCUT, the reference's single-image model, is {_LATER}",
        "cycle_gan": f"the reference's CycleGAN model is {_LATER}",
        "template": "the reference's template is an example for writing new models, not a model to run",
        "test": "CycleGAN's generator-only test model is not needed: test.py always runs only the generator",
    },
    "dataset_mode": {
        "singleimage": f"SinCUT's single-image dataset is {_LATER}",
        "template": "the reference's template is an example for writing new datasets, not a dataset",
    },
    "netG": {
        "unet_128": f"the U-Net generator is {_LATER}",
        "unet_256": f"the U-Net generator is {_LATER}",
        "stylegan2": f"the StyleGAN2 generator is {_LATER}",
        "smallstylegan2": f"the StyleGAN2 generator is {_LATER}",
        "resnet_cat": f"the resnet_cat generator is {_LATER}",
    },
    "netD": {
        "stylegan2": f"the StyleGAN2 discriminator is {_LATER}",
        "tilestylegan2": f"the StyleGAN2 discriminator is {_LATER}",
        "patch": ("the reference lists it but builds no network for it (its define_D rejects 'patch'; the word "
                  "only modifies its StyleGAN2 discriminators, which are " + _LATER + ")"),
    },
    "netF": {
        "reshape": f"the reshape projection (netF) is {_LATER}",
    },
    "preprocess": {
        "zoom_and_patch": f"SinCUT's zoom-and-patch preprocessing is {_LATER}",
    },
}

INSTEAD: dict[str, str] = {
    "model": "--model cut (with --CUT_mode CUT or FastCUT)",
    "dataset_mode": "--dataset_mode unaligned for training, single for testing",
    "netG": "--netG resnet_9blocks, resnet_6blocks or resnet_4blocks",
    "netD": "--netD basic (the 70x70 PatchGAN), n_layers or pixel",
    "netF": "--netF mlp_sample (CUT's default) or sample",
    "preprocess": "--preprocess resize_and_crop, crop, scale_width, scale_width_and_crop or none",
}


def choices_with_unavailable(flag: str, built: tuple[str, ...]) -> tuple[str, ...]:
    """argparse choices for `flag`: the built values, then the reference's unavailable ones."""
    return built + tuple(UNAVAILABLE[flag])


def unavailable_help(flag: str) -> str:
    """A sentence for --help naming the reference's values of `flag` that stop with an explanation."""
    return f" ({', '.join(UNAVAILABLE[flag])}: the reference CUT's, not available here -- the run stops and says why)"


def check_available(opt: argparse.Namespace, error: Callable[[str], object],
                    flags: tuple[str, ...] = tuple(UNAVAILABLE)) -> None:
    """Call `error` (argparse's parser.error: exit 2) for the first of `flags` set to an unavailable value."""
    for flag in flags:
        value = getattr(opt, flag, None)
        if value in UNAVAILABLE[flag]:
            error(f"--{flag} {value}: {UNAVAILABLE[flag][value]}; use {INSTEAD[flag]}")
