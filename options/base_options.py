"""Options shared by training and testing.

Flag names, meanings and defaults follow CUT (taesungp/contrastive-unpaired-translation) so
existing commands keep working. Each model and dataset adds its own flags through its
``modify_commandline_options`` hook, found by ``--model`` / ``--dataset_mode``.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import data
import models
from models.networks import min_image_side
from models.networks.generators import ResnetGenerator
from options.common import available_cpus, count_or_inf, str2bool
from options.unavailable_choices import check_available, choices_with_unavailable, unavailable_help

NETG_CHOICES = ("resnet_9blocks", "resnet_6blocks", "resnet_4blocks")
NETD_CHOICES = ("basic", "n_layers", "pixel")
NORM_CHOICES = ("instance", "batch", "none")
PREPROCESS_CHOICES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")


log = logging.getLogger(__name__)


class _ArgvParser(argparse.ArgumentParser):
    """Parses the given argv, not sys.argv, when an option hook calls `parse_known_args()` as
    CUT's hooks do (e.g. to pick FastCUT's defaults), so `train.main(argv)` behaves like the CLI."""

    def __init__(self, argv: list[str] | None, **kwargs):
        super().__init__(**kwargs)
        self.argv = argv

    def parse_known_args(self, args=None, namespace=None):
        return super().parse_known_args(self.argv if args is None else args, namespace)


def run_name(opt: argparse.Namespace) -> str:
    """--name, with --suffix formatted with the options and appended as CUT does (e.g. --suffix {netG}
    -> NAME_resnet_9blocks). ValueError names a {field} that is no option."""
    if not opt.suffix:
        return opt.name
    try:
        return f"{opt.name}_{opt.suffix.format(**vars(opt))}"
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(f"--suffix {opt.suffix}: every {{field}} must name an option, e.g. {{netG}}_{{ngf}} "
                         f"({type(err).__name__}: {err})") from None


class BaseOptions:
    """Builds the parser in two passes: generic flags, then the chosen model's and dataset's."""

    is_train: bool = False

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        g = parser.add_argument_group("experiment")
        g.add_argument("--dataroot", default="./datasets/toy",
                       help="dataset folder with subfolders trainA, trainB (and testA, testB)")
        g.add_argument("--name", default="experiment_name",
                       help="experiment name: checkpoints go to CHECKPOINTS_DIR/NAME")
        g.add_argument("--checkpoints_dir", default="./checkpoints", help="where runs are stored")
        g.add_argument("--gpu_ids", default=None,
                       help="GPU id to use, e.g. 0 (-1 = CPU). Default: the first GPU if there is "
                            "one, else CPU. For several GPUs launch with torchrun (see docs/scaling_up.md)")
        g.add_argument("--seed", type=int, default=0,
                       help="random seed for weights, data order, augmentation and Langevin noise")
        g.add_argument("--model", default="cut", choices=choices_with_unavailable("model", models.available()),
                       help="which model" + unavailable_help("model"))
        g.add_argument("--verbose", action="store_true", help="print network architectures")
        g.add_argument("--suffix", default="",
                       help="appended to --name, formatted with the options: e.g. {model}_{netG}")
        g.add_argument("--easy_label", default="experiment_name",
                       help="a readable label for the run; recorded in train_opt.txt, used by nothing (as in CUT, "
                            "where only its experiment launcher reads it)")

        g = parser.add_argument_group("networks")
        g.add_argument("--input_nc", type=int, default=3, choices=(1, 3),
                       help="input image channels: 3 for RGB, 1 for grayscale")
        g.add_argument("--output_nc", type=int, default=3, choices=(1, 3),
                       help="output image channels: 3 for RGB, 1 for grayscale")
        g.add_argument("--ngf", type=int, default=64, help="generator filters in the first conv layer")
        g.add_argument("--ndf", type=int, default=64, help="discriminator filters in the first conv layer")
        g.add_argument("--netG", default="resnet_9blocks", choices=choices_with_unavailable("netG", NETG_CHOICES),
                       help="generator architecture" + unavailable_help("netG"))
        g.add_argument("--netD", default="basic", choices=choices_with_unavailable("netD", NETD_CHOICES),
                       help="discriminator: basic = 70x70 PatchGAN, n_layers = PatchGAN with "
                            "--n_layers_D layers, pixel = 1x1 PatchGAN" + unavailable_help("netD"))
        g.add_argument("--n_layers_D", type=int, default=3,
                       help="layers of the n_layers discriminator; used only with --netD n_layers (basic is "
                            "always 3 layers, as in CUT)")
        g.add_argument("--normG", default="instance", choices=NORM_CHOICES, help="generator normalization")
        g.add_argument("--normD", default="instance", choices=NORM_CHOICES,
                       help="discriminator normalization")
        g.add_argument("--init_type", default="xavier", choices=("normal", "xavier", "kaiming", "orthogonal"),
                       help="weight initialization")
        g.add_argument("--init_gain", type=float, default=0.02, help="scale for normal, xavier and orthogonal")
        g.add_argument("--no_dropout", type=str2bool, nargs="?", const=True, default=True,
                       help="no dropout in the generator (CUT's default)")
        g.add_argument("--no_antialias", action="store_true",
                       help="strided convolutions instead of anti-aliased (blur) downsampling")
        g.add_argument("--amp", action="store_true",
                       help="bfloat16 autocast (opt-in; for hardware with native bfloat16, GPUs and CPUs with "
                            "AVX512-BF16/AMX: far slower on AVX2-only CPUs; results differ from float32 beyond "
                            "rounding; docs/results.md, Speed)")
        g.add_argument("--no_antialias_up", action="store_true",
                       help="transposed convolutions instead of anti-aliased upsampling")
        g.add_argument("--stylegan2_G_num_downsampling", type=int, default=1,
                       help="downsamplings of the StyleGAN2 generators (--netG stylegan2, not built yet); "
                            "no effect on the ResNet generators, as in CUT")

        g = parser.add_argument_group("data")
        g.add_argument("--dataset_mode", default="unaligned",
                       choices=choices_with_unavailable("dataset_mode", data.available()),
                       help="unaligned: unpaired A/B folders; single: one folder of images (testing)"
                            + unavailable_help("dataset_mode"))
        g.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"), help="translation direction")
        g.add_argument("--serial_batches", action="store_true",
                       help="take images in order (else shuffled, and B paired at random)")
        g.add_argument("--num_threads", type=int, default=min(4, available_cpus()),
                       help="data loading worker processes: CUT's 4, or one per CPU core where there are "
                            "fewer (more only slow the machine down); 0 = load in the main process")
        g.add_argument("--batch_size", type=int, default=1, help="images per batch (per process under torchrun)")
        g.add_argument("--load_size", type=int, default=286, help="scale images to this size")
        g.add_argument("--crop_size", type=int, default=256, help="then crop to this size")
        g.add_argument("--max_dataset_size", type=count_or_inf, default=float("inf"),
                       help="use at most this many images per domain (inf: all)")
        g.add_argument("--preprocess", default="resize_and_crop",
                       choices=choices_with_unavailable("preprocess", PREPROCESS_CHOICES),
                       help="scaling and cropping of images at load time" + unavailable_help("preprocess"))
        g.add_argument("--no_flip", action="store_true", help="no random horizontal flips")
        g.add_argument("--display_winsize", type=int, default=256, help="display window size (visdom, HTML)")
        g.add_argument("--random_scale_max", type=float, default=3.0,
                       help="random zoom range of SinCUT's single-image dataset (not built yet); no effect on "
                            "the unaligned and single datasets, as in CUT")
        g.add_argument("--epoch", default="latest",
                       help="which checkpoint to load: latest, best, an epoch number, or iter_N (--save_by_iter)")
        return parser

    def gather_options(self, argv: list[str] | None) -> argparse.Namespace:
        # --help is added last, so the probing passes do not exit before the model's and the
        # dataset's flags are known (and the help lists them).
        parser = _ArgvParser(argv, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                             description=self.__doc__, add_help=False)
        parser = self.initialize(parser)
        known, _ = parser.parse_known_args(argv)
        check_available(known, parser.error, ("model",))  # before its hook, which only built models have
        parser = models.get_option_setter(known.model)(parser, self.is_train)
        known, _ = parser.parse_known_args(argv)
        check_available(known, parser.error, ("dataset_mode",))
        parser = data.get_option_setter(known.dataset_mode)(parser, self.is_train)
        known_flags = {action.dest for action in parser._actions}
        try:
            defaults = self.run_defaults(known)
        except ValueError as err:  # a damaged train_opt.json, or a --suffix naming no option
            parser.error(str(err))
        # A recorded option this version no longer has is dropped, not carried into the run's options.
        parser.set_defaults(**{k: v for k, v in defaults.items() if k in known_flags})
        parser.add_argument("-h", "--help", action="help", help="show this help message and exit")
        self.parser = parser
        return parser.parse_args(argv)

    def run_defaults(self, known: argparse.Namespace) -> dict:
        """Defaults that depend on the run being created or read (none for a fresh run); `known` holds the
        flags given and the parser's defaults. ValueError names a run file that cannot be read."""
        return {}

    def validate(self, opt: argparse.Namespace) -> None:
        """Reject impossible combinations before any work starts (argparse-style exit 2)."""
        check_available(opt, self.parser.error)
        if opt.batch_size < 1:
            self.parser.error("--batch_size must be at least 1")
        if opt.crop_size < 1 or opt.load_size < 1:
            self.parser.error("--crop_size and --load_size must be positive")
        if opt.preprocess in ("resize_and_crop", "scale_width_and_crop") and opt.crop_size > opt.load_size:
            self.parser.error(f"--crop_size {opt.crop_size} is larger than --load_size {opt.load_size}: "
                              "the crop would not fit; lower --crop_size or raise --load_size")
        if opt.num_threads < 0:
            self.parser.error("--num_threads must be >= 0")
        for flag in ("ngf", "ndf", "max_dataset_size", "num_patches", "netF_nc"):
            if getattr(opt, flag, 1) < 1:
                self.parser.error(f"--{flag} must be at least 1")
        if opt.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop") and opt.crop_size % 4:
            self.parser.error(f"--crop_size {opt.crop_size} must be a multiple of 4: the generator halves the "
                              "image twice and doubles it back")
        if opt.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
            self.check_crop_fits_networks(opt)
        if not all(part.strip().isdigit() for part in getattr(opt, "nce_layers", "0").split(",")):
            self.parser.error(f"--nce_layers {opt.nce_layers}: expected comma-separated layer numbers, e.g. 0,4,8")
        if self.is_train and opt.netD != "n_layers" and opt.n_layers_D != self.parser.get_default("n_layers_D"):
            # CUT ignores it silently too; kept legal so CUT commands run, but a sweep over it would measure nothing.
            # Training only: test.py builds no D, so "add --netD n_layers" would be wrong advice there.
            log.warning("--n_layers_D %d has no effect with --netD %s (only n_layers reads it; basic is a fixed "
                        "3-layer PatchGAN): add --netD n_layers to use it", opt.n_layers_D, opt.netD)
        gpu_ids = [part.strip() for part in str(opt.gpu_ids or "").split(",") if part.strip()]
        if not all(part.lstrip("-").isdigit() for part in gpu_ids):
            self.parser.error(f"--gpu_ids {opt.gpu_ids}: expected GPU numbers such as 0 or 0,1, or -1 for the CPU")

    def check_crop_fits_networks(self, opt: argparse.Namespace) -> None:
        """Exit 2 (argparse-style) when --crop_size is below the smallest side the networks run on (G,
        and D when training): PyTorch would fail on the first batch with a size error naming no flag."""
        side, source = min_image_side(opt, discriminator=self.is_train)
        if opt.crop_size < side:
            smallest = -(-side // ResnetGenerator.size_multiple) * ResnetGenerator.size_multiple
            load = " (and --load_size as large)" if opt.preprocess != "crop" and opt.load_size < smallest else ""
            other = " or a smaller --n_layers_D" if "--n_layers_D" in source else ""
            self.parser.error(f"--crop_size {opt.crop_size} is smaller than {side} px, the smallest side {source} "
                              f"takes: use --crop_size {smallest} or more{load}{other}")

    def parse(self, argv: list[str] | None = None) -> argparse.Namespace:
        opt = self.gather_options(argv)
        opt.isTrain = self.is_train
        try:
            opt.name = run_name(opt)
        except ValueError as err:
            self.parser.error(str(err))
        self.validate(opt)
        self.opt = opt
        return opt

    def format(self, opt: argparse.Namespace) -> str:
        """Options as CUT prints them: value, and the default where it differs."""
        lines = ["----------------- Options ---------------"]
        for key, value in sorted(vars(opt).items()):
            default = self.parser.get_default(key)
            note = f"\t[default: {default}]" if value != default and default is not None else ""
            lines.append(f"{key:>25}: {value!s:<30}{note}")
        lines.append("----------------- End -------------------")
        return "\n".join(lines)

    def save(self, opt: argparse.Namespace, filename: str) -> Path:
        run_dir = Path(opt.checkpoints_dir) / opt.name
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / filename
        path.write_text(self.format(opt) + "\n")
        return path
