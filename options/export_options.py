"""Export options: write a trained generator as TorchScript or ONNX (export.py)."""
from __future__ import annotations

import argparse
from pathlib import Path

from options.test_options import TestOptions, set_help

# test.py's flags that ExportOptions inherits but export.py does not read: hidden from --help, refused if given
TEST_ONLY_FLAGS = ("results_dir", "aspect_ratio", "tile", "tile_overlap", "video", "out", "video_codec")


class ExportOptions(TestOptions):
    """Export CHECKPOINTS_DIR/NAME/EPOCH_net_G.pth as TorchScript or ONNX, with a parity check on DATAROOT's
    test images. The generator's options, --crop_size and --dataroot default to the run's (train_opt.json),
    as in test.py; the defaults listed below are for a run that records none."""

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

    def gather_options(self, argv: list[str] | None) -> argparse.Namespace:
        opt = super().gather_options(argv)
        probe = argparse.ArgumentParser(add_help=False)  # given at all, even at test.py's default value
        for flag in TEST_ONLY_FLAGS:
            probe.add_argument(f"--{flag}")
        given = [f"--{key}" for key, value in vars(probe.parse_known_args(argv)[0]).items() if value is not None]
        if given:
            self.parser.error(f"{', '.join(given)}: test.py's flag{'s' if len(given) > 1 else ''}, which export.py "
                              "does not use (it writes the generator alone, to --export_path)")
        return opt

    def validate(self, opt: argparse.Namespace) -> None:
        super().validate(opt)
        if opt.export_path:  # before the export's work, not as a traceback from the writer after it
            path = Path(opt.export_path)
            if path.is_dir():
                self.parser.error(f"--export_path {path} is a folder: name the file to write, e.g. "
                                  f"{path / ('latest_net_G.onnx' if opt.format == 'onnx' else 'latest_net_G.pt')}")
            blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
            if blocking is not None:
                self.parser.error(f"--export_path {path}: {blocking} is a file, not a folder")
