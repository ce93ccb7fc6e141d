"""The networks: ResNet generator, PatchGAN discriminators, and the smallest image they take."""
from __future__ import annotations

import argparse

from models.networks.discriminators import min_input_side
from models.networks.generators import ResnetGenerator


def min_image_side(opt: argparse.Namespace, *, discriminator: bool) -> tuple[int, str]:
    """Smallest square image side the networks run on under `opt` (G alone, or G and D as in
    training), and what sets it, for messages: "the generator" or "--netD basic with --normD ..."."""
    side, source = ResnetGenerator.min_side, "the generator"
    if discriminator:
        d_side = min_input_side(net=opt.netD, n_layers=opt.n_layers_D, norm=opt.normD,
                                antialias=not opt.no_antialias, batch_size=opt.batch_size)
        if d_side > side:
            layers = f" --n_layers_D {opt.n_layers_D}" if opt.netD == "n_layers" else ""
            side, source = d_side, f"--netD {opt.netD}{layers} with --normD {opt.normD}"
    return side, source
