"""Export options: write a trained generator as TorchScript or ONNX (export.py)."""
from __future__ import annotations

import argparse

from options.test_options import TestOptions, set_help

# test.py's flags that ExportOptions inherits but export.py does not read: hidden from --help, refused if given
TEST_ONLY_FLAGS = ("results_dir", "aspect_ratio", "tile", "tile_overlap", "video", "out", "video_codec")


class ExportOptions(TestOptions):
    """Export CHECKPOINTS_DIR/NAME/EPOCH_net_G.pth as TorchScript or ONNX, with a parity check on DATAROOT's test images."""

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = super().initialize(parser)
        g = parser.add_argument_group("export")
        g.add_argument("--format", default="onnx", choices=("torchscript", "onnx"), help="file format to write")
        g.add_argument("--export_path", default=None,
                       help="file to write (default: CHECKPOINTS_DIR/NAME/EPOCH_net_G.pt or .onnx); FILE.json beside it "
                            "records the options, input range and channel order")
        g.add_argument("--parity_tolerance", type=float, default=1e-4,
                       help="largest allowed |exported - PyTorch| on the parity images (output range [-1, 1])")
        set_help(parser, "--num_test", "compare the export with PyTorch on at most this many test images, plus one "
                                       "of odd size (default: %(default)s)")
        parser.set_defaults(num_test=4)
        for flag in TEST_ONLY_FLAGS:
            set_help(parser, f"--{flag}", argparse.SUPPRESS)
        return parser

    def validate(self, opt: argparse.Namespace) -> None:
        # before test.py's own checks, which would judge e.g. --video without --out
        given = [f"--{key}" for key in TEST_ONLY_FLAGS if getattr(opt, key) != self.parser.get_default(key)]
        if given:
            self.parser.error(f"{', '.join(given)}: test.py's flags, which export.py does not use (it writes the "
                              "generator alone, to --export_path)")
        super().validate(opt)
