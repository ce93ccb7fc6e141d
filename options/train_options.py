"""Training options: CUT's set plus checkpointing, logging and display."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from models.schedule import coop_epochs_from_flag
from options.base_options import BaseOptions, run_name
from options.test_options import PRETRAINED_SHAPE, training_options

# What --continue_train does not take from the run's train_opt.json: where the run is, which
# checkpoint to resume, and this machine's devices, workers and display.
NOT_RESUMED = ("name", "checkpoints_dir", "suffix", "continue_train", "epoch", "epoch_count", "gpu_ids", "num_threads",
               "verbose", "display_id", "display_server", "display_env", "display_port")


class TrainOptions(BaseOptions):
    """Train an unpaired image-to-image translator (CUT / FastCUT, with CoopInit)."""

    is_train = True

    def initialize(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser = super().initialize(parser)
        g = parser.add_argument_group("display and logging")
        g.add_argument("--display_freq", type=int, default=400,
                       help="show training images every N iterations (visdom)")
        g.add_argument("--display_ncols", type=int, default=4, help="images per row in visdom")
        g.add_argument("--display_id", type=int, default=1,
                       help="visdom window id; 0 or negative disables visdom (nothing is contacted). "
                            "Start a server with: .venv/bin/python -m visdom.server -port 8097 -bind_local")
        g.add_argument("--display_server", default="http://localhost", help="visdom server address")
        g.add_argument("--display_env", default="main", help="visdom environment name")
        g.add_argument("--display_port", type=int, default=8097, help="visdom server port")
        g.add_argument("--update_html_freq", type=int, default=1000,
                       help="add a row of images to checkpoints/NAME/web/index.html every N iterations, and "
                            "one at the end of training")
        g.add_argument("--print_freq", type=int, default=100,
                       help="print and log losses every N iterations")
        g.add_argument("--no_html", action="store_true", help="do not write the HTML training page")

        g = parser.add_argument_group("checkpoints")
        g.add_argument("--save_latest_freq", type=int, default=5000,
                       help="save the 'latest' checkpoint every N iterations")
        g.add_argument("--save_by_iter", action="store_true",
                       help="name the checkpoints saved every --save_latest_freq iterations iter_N (N = iteration) "
                            "instead of latest, keeping each; test or resume one with --epoch iter_N")
        g.add_argument("--save_epoch_freq", type=int, default=5,
                       help="save a per-epoch checkpoint every N epochs")
        g.add_argument("--continue_train", action="store_true",
                       help="resume the run from the checkpoint named by --epoch, with the options in its "
                            "train_opt.json (all but the device, workers and display; flags given override them, "
                            "with a note). latest (or iter_N) restores optimizers, schedule, iteration and RNG "
                            "state; an epoch number N has weights only (N_net_*.pth): training goes on at epoch "
                            "N + 1 (or --epoch_count) with fresh optimizers")
        g.add_argument("--epoch_count", type=int, default=None,
                       help="first epoch number (default: 1 for a fresh run, N + 1 for one continued from the "
                            "weights of epoch N, N_net_*.pth); a run resumed from its state reads it from the state")
        g.add_argument("--pretrained_name", default=None,
                       help="start from the weights (G, D and F) of run CHECKPOINTS_DIR/PRETRAINED_NAME at --epoch, "
                            "with fresh optimizers and a fresh CoopInit schedule (--coop_epochs 0 skips CoopInit); "
                            "runs of the reference CUT code load too. Architecture options default to that "
                            "run's. With --continue_train this run's own checkpoint, once it has one, wins")
        g.add_argument("--phase", default="train", help="data split to train on (DATAROOT/PHASE{A,B})")

        g = parser.add_argument_group("evaluation during training")
        g.add_argument("--eval_freq", type=int, default=0,
                       help="every N epochs translate the test split and log FID/KID against testB; the best "
                            "generator is kept as best_net_G.pth (+ best.json). 0 = off")
        g.add_argument("--eval_max_images", type=int, default=0,
                       help="evaluate on at most this many test images per domain (0 = all)")
        g.add_argument("--evaluation_freq", type=int, default=5000,
                       help="accepted for CUT compatibility: the reference defines it but never reads it; use "
                            "--eval_freq for FID/KID during training")

        g = parser.add_argument_group("optimization")
        g.add_argument("--n_epochs", type=int, default=200, help="epochs at the initial learning rate")
        g.add_argument("--n_epochs_decay", type=int, default=200,
                       help="epochs over which the learning rate decays linearly to zero")
        g.add_argument("--beta1", type=float, default=0.5, help="Adam beta1")
        g.add_argument("--beta2", type=float, default=0.999, help="Adam beta2")
        g.add_argument("--lr", type=float, default=0.0002, help="initial Adam learning rate")
        g.add_argument("--gan_mode", default="lsgan", choices=("lsgan", "vanilla", "nonsaturating", "wgangp"),
                       help="GAN objective (adversarial stage)")
        g.add_argument("--lr_policy", default="linear", choices=("linear", "step", "plateau", "cosine"),
                       help="learning rate schedule")
        g.add_argument("--lr_decay_iters", type=int, default=50,
                       help="step policy: multiply the learning rate by 0.1 every N epochs")
        g.add_argument("--pool_size", type=int, default=0,
                       help="size of the buffer of earlier fakes that CycleGAN shows D; CUT uses none (the "
                            "reference's CUT sets 0 and ignores other values), and neither does this code")
        return parser

    def run_defaults(self, known: argparse.Namespace) -> dict:
        """With --pretrained_name, that run's network shapes: its weights then load without repeating them.
        With --continue_train, every option the run recorded in its train_opt.json (but NOT_RESUMED), so a
        bare `--continue_train --name NAME` resumes the same run; flags given on the command line win."""
        trained = training_options(known.checkpoints_dir, known.pretrained_name) if known.pretrained_name else {}
        defaults = {k: trained[k] for k in PRETRAINED_SHAPE if k in trained}
        # train_opt.json only: a reference CUT run (train_opt.txt) resumes as in CUT, from the flags given.
        record = (training_options(known.checkpoints_dir, run_name(known), reference_format=False)
                  if known.continue_train else {})
        self.resumed_options = {k: v for k, v in record.items() if k not in NOT_RESUMED}
        defaults.update(self.resumed_options)
        return defaults

    def validate(self, opt: argparse.Namespace) -> None:
        super().validate(opt)
        if opt.pool_size < 0:
            self.parser.error("--pool_size must be >= 0")
        if opt.pool_size:
            print(f"note: --pool_size {opt.pool_size} has no effect: CUT trains D on the current fakes only "
                  "(the reference's CUT ignores it as well)", file=sys.stderr)
        for flag in ("n_epochs", "n_epochs_decay", "eval_freq", "eval_max_images"):
            if getattr(opt, flag) < 0:
                self.parser.error(f"--{flag} must be >= 0")
        if not 0 < opt.lr < math.inf:  # written this way so NaN is refused too
            self.parser.error(f"--lr must be positive and finite (got {opt.lr}); CUT's default is 0.0002")
        if opt.n_epochs + opt.n_epochs_decay < 1:
            self.parser.error("--n_epochs + --n_epochs_decay must be at least 1")
        if opt.epoch_count is not None and not 1 <= opt.epoch_count <= opt.n_epochs + opt.n_epochs_decay:
            self.parser.error(f"--epoch_count {opt.epoch_count} is outside the schedule, epochs 1 to "
                              f"{opt.n_epochs + opt.n_epochs_decay} (--n_epochs + --n_epochs_decay): lower "
                              "--epoch_count or raise --n_epochs")
        for flag in ("print_freq", "display_freq", "update_html_freq", "save_latest_freq", "save_epoch_freq"):
            if getattr(opt, flag) < 1:
                self.parser.error(f"--{flag} must be at least 1")
        if hasattr(opt, "coop_epochs"):
            try:
                opt.coop_epochs = coop_epochs_from_flag(opt.coop_epochs,
                                                        total_epochs=opt.n_epochs + opt.n_epochs_decay)
            except ValueError as error:  # also a negative value
                self.parser.error(str(error))
        for flag in ("coop_langevin_steps", "coop_step_size", "coop_blend_iters", "coop_energy_reg",
                     "lambda_GAN", "lambda_NCE", "lambda_R1", "lambda_teach"):
            if getattr(opt, flag, 0) < 0:
                self.parser.error(f"--{flag} must be >= 0")
        if getattr(opt, "coop_ref_sigma", 1) <= 0:
            self.parser.error("--coop_ref_sigma must be positive (the energy divides by it)")
        self.note_resumed_options_changed(opt)  # last: --coop_epochs is resolved to epochs, as recorded

    def note_resumed_options_changed(self, opt: argparse.Namespace) -> None:
        """With --continue_train, name the flags given that differ from the run's record (they win, and
        train_opt.json is rewritten with them): a changed run should never pass unnoticed."""
        changed = [f"--{key} {getattr(opt, key)} (was {was})" for key, was in self.resumed_options.items()
                   if hasattr(opt, key) and str(getattr(opt, key)) != str(was)
                   and not (key == "dataroot" and Path(opt.dataroot).resolve() == Path(str(was)).resolve())]
        if changed:
            print(f"note: --continue_train with options that differ from {opt.checkpoints_dir}/{opt.name}/"
                  f"train_opt.json; the run goes on with them: {', '.join(changed)}", file=sys.stderr)
