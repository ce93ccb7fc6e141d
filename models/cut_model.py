"""CUT and FastCUT (Park et al., 2020) with CoopInit (Zhao et al., 2023).

Stage 1 (cooperative, iterations < coop_iters): D is an energy-based model trained by maximum
likelihood on Langevin-revised samples; G learns the revisions (MCMC teaching) plus PatchNCE.
Stage 2 (adversarial): plain CUT. An optional blend ramps from one to the other. The schedule
(models/schedule.py) decides the stage; the cooperative maths lives in models/coop.py.
"""
from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from models import coop
from models.calibration import CALIBRATION_IMAGES, Calibration, calibrate_discriminator, output_layer
from models.base_model import BaseModel, check_finite, set_requires_grad
from models.ema import ema_copy, update_ema
from models.gan_loss import gan_loss, r1_penalty
from models.networks.discriminators import build_discriminator
from models.networks.generators import build_generator
from models.patchnce import PatchSampleF, patch_nce_loss
from models.schedule import ADVERSARIAL, COOP_STAGE_DEFAULT, StageSchedule
from options.common import str2bool
from options.unavailable_choices import choices_with_unavailable, unavailable_help
from util.checkpoint import safe_load

STAGE1_LOSSES = ["EBM", "teach", "f_data", "f_revised", "f_proposal", "langevin_change",
                 "langevin_improved"]
STAGE2_LOSSES = ["G_GAN", "D_real", "D_fake", "G"]


class CUTModel(BaseModel):
    """Contrastive unpaired translation; `--coop_epochs 0` gives exactly CUT / FastCUT."""

    visual_names = ["real_A", "fake_B", "real_B", "idt_B", "revised_B"]
    optional_nets = ("G_ema",)  # CUT's runs and --ema_decay 0 have none: started from G

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        g = parser.add_argument_group("CUT")
        g.add_argument("--CUT_mode", default="CUT", choices=("CUT", "cut", "FastCUT", "fastcut"),
                       help="CUT, or FastCUT (no identity NCE, lambda_NCE 10, flip equivariance, 150+50 epochs)")
        g.add_argument("--lambda_GAN", type=float, default=1.0, help="weight of the GAN loss")
        g.add_argument("--lambda_NCE", type=float, default=1.0, help="weight of the PatchNCE loss")
        g.add_argument("--lambda_R1", type=float, default=0.0,
                       help="gamma of the R1 gradient penalty on D's real images, (gamma / 2) * |grad_x D(x)|^2 "
                            "added to D's adversarial loss (Mescheder et al. 2018; not in CUT: 0 = off, as CUT)")
        g.add_argument("--nce_idt", type=str2bool, nargs="?", const=True, default=False,
                       help="also apply PatchNCE to G(B) vs B (identity), as CUT does")
        g.add_argument("--nce_layers", default="0,4,8,12,16", help="generator layers PatchNCE compares")
        g.add_argument("--nce_includes_all_negatives_from_minibatch", type=str2bool, nargs="?", const=True,
                       default=False, help="take PatchNCE negatives from the whole batch, not only the same image")
        g.add_argument("--netF", default="mlp_sample",
                       choices=choices_with_unavailable("netF", ("sample", "mlp_sample")),
                       help="patch projection head: sample = none, mlp_sample = 2-layer MLP" + unavailable_help("netF"))
        g.add_argument("--netF_nc", type=int, default=256, help="width of the projection MLP")
        g.add_argument("--nce_T", type=float, default=0.07, help="PatchNCE temperature")
        g.add_argument("--num_patches", type=int, default=256, help="patches sampled per layer")
        g.add_argument("--flip_equivariance", type=str2bool, nargs="?", const=True, default=False,
                       help="randomly flip inputs horizontally during training (FastCUT's regulariser)")
        if is_train:
            g.add_argument("--ema_decay", type=float, default=0.995,
                           help="decay d of the moving average of G's weights and batch-norm statistics, "
                                "theta_ema <- d * theta_ema + (1 - d) * theta after every step (Yazici et al. "
                                "2019; not in CUT), saved as EPOCH_net_G_ema.pth; test.py, export.py and "
                                "--eval_freq translate with it. 0 = off, as CUT. Default measured on the demo "
                                "(docs/results.md): 0.995 beat 0.99; 0.997 and above lose the stripes")
            g = parser.add_argument_group("CoopInit (cooperative initialization, docs/coopinit.md)")
            g.add_argument("--coop_epochs", default=COOP_STAGE_DEFAULT,
                           help="length of the cooperative stage: epochs (fractions allowed, e.g. 2 or 0.5) or a "
                                "percentage of --n_epochs + --n_epochs_decay (e.g. 5%%); 0 = plain CUT. "
                                "Default: %(default)s, measured (docs/coopinit.md, 'Stage length')")
            g.add_argument("--coop_langevin_steps", type=int, default=15, help="Langevin steps K per revision")
            g.add_argument("--coop_step_size", type=float, default=0.3,
                           help="Langevin step size delta (calibrated: docs/coopinit.md)")
            g.add_argument("--coop_ref_sigma", type=float, default=10.0,
                           help="std s_ref of the Gaussian reference distribution of the EBM")
            g.add_argument("--coop_noise", type=str2bool, nargs="?", const=True, default=False,
                           help="add the Langevin noise term delta * eps (off = gradient descent on the energy)")
            g.add_argument("--lambda_teach", type=float, default=1.0,
                           help="weight of the MCMC-teaching loss mean((revised - G(x))^2)")
            g.add_argument("--coop_energy_reg", type=float, default=0.0,
                           help="alpha of the stabiliser alpha * (mean f(y)^2 + mean f(revised)^2)")
            g.add_argument("--coop_blend_iters", type=int, default=0,
                           help="iterations over which the losses ramp from cooperative to adversarial "
                                "(0 = hard switch)")
            g.add_argument("--coop_calibrate_D", type=str2bool, nargs="?", const=True, default=True,
                           help="when the adversarial loss starts, fit the affine map of D's raw scores that "
                                "minimises its GAN loss on %d real and generated training images and fold it "
                                "into D's last layer: D keeps its ranking, its outputs start where the GAN loss "
                                "expects them (docs/coopinit.md, 'The switch')" % CALIBRATION_IMAGES)
            g.add_argument("--coop_reset_optimizers", nargs="?", const="D", default="D",
                           choices=("none", "D", "all"),
                           help="at the switch to adversarial training, reset the Adam moments of D (default; "
                                "they were built on the maximum-likelihood loss, another loss at another scale), "
                                "of G, F and D (all), or of none")
        known, _ = parser.parse_known_args()
        if known.CUT_mode.lower() == "cut":
            parser.set_defaults(nce_idt=True, lambda_NCE=1.0)
        else:
            parser.set_defaults(nce_idt=False, lambda_NCE=10.0, flip_equivariance=True,
                                n_epochs=150, n_epochs_decay=50)
        return parser

    def __init__(self, opt: argparse.Namespace, device: torch.device):
        super().__init__(opt, device)
        if opt.isTrain and opt.lambda_NCE > 0 and opt.input_nc != opt.output_nc:
            raise ValueError(f"PatchNCE runs G's encoder on G's output, so --input_nc {opt.input_nc} must equal "
                             f"--output_nc {opt.output_nc}: set both to the same value")
        self.nce_layers = [int(i) for i in opt.nce_layers.split(",")]
        self.netG = build_generator(net=opt.netG, input_nc=opt.input_nc, output_nc=opt.output_nc, ngf=opt.ngf,
                                    norm=opt.normG, dropout=not opt.no_dropout, antialias=not opt.no_antialias,
                                    antialias_up=not opt.no_antialias_up, init_type=opt.init_type,
                                    init_gain=opt.init_gain).to(device)
        self.nets["G"] = self.netG
        if opt.isTrain:
            self.check_nce_layers()
        self.netG_ema: torch.nn.Module | None = None
        self.loss_names = ["NCE"] + (["NCE_Y"] if opt.nce_idt and opt.lambda_NCE > 0 else [])
        if not opt.isTrain:
            return
        self.netF = PatchSampleF(use_mlp=opt.netF == "mlp_sample", nc=opt.netF_nc, init_type=opt.init_type,
                                 init_gain=opt.init_gain).to(device)
        self.netD = build_discriminator(net=opt.netD, input_nc=opt.output_nc, ndf=opt.ndf, n_layers=opt.n_layers_D,
                                        norm=opt.normD, antialias=not opt.no_antialias, init_type=opt.init_type,
                                        init_gain=opt.init_gain).to(device)
        self.nets.update(F=self.netF, D=self.netD)
        if not 0 <= opt.ema_decay < 1:
            raise ValueError(f"--ema_decay {opt.ema_decay}: must be in [0, 1) (0 = no moving average of G)")
        self.netG_ema = ema_copy(self.netG) if opt.ema_decay > 0 else None
        if self.netG_ema is not None:
            self.nets["G_ema"] = self.netG_ema
        if opt.coop_epochs > 0 and opt.coop_calibrate_D and output_layer(self.netD).bias is None:
            raise ValueError(f"--coop_calibrate_D shifts D's scores through its last layer's bias, which --netD "
                             f"{opt.netD} --normD {opt.normD} lacks: use --coop_calibrate_D false or --normD instance")
        self.loss_names = STAGE1_LOSSES + STAGE2_LOSSES + (["R1"] if opt.lambda_R1 > 0 else []) + self.loss_names
        betas = (opt.beta1, opt.beta2)
        self.optimizers["G"] = torch.optim.Adam(self.netG.parameters(), lr=opt.lr, betas=betas)
        self.optimizers["D"] = torch.optim.Adam(self.netD.parameters(), lr=opt.lr, betas=betas)
        self.schedule = StageSchedule(coop_iters=0)

    # -- checkpoints --------------------------------------------------------------------------
    def start_missing_net(self, name: str) -> None:
        """G_ema, which CUT's runs and runs trained with --ema_decay 0 lack: the average starts from G."""
        self.netG_ema.load_state_dict(self.netG.state_dict())

    def load_generator(self, run_dir: Path, tag: str | int) -> str:
        """Load the generator test.py translates with into netG: TAG_net_G_ema.pth (the moving average)
        if the run has it, else TAG_net_G.pth. Returns the file's name; CheckpointError as load_networks."""
        path = self.net_file(run_dir, tag, "G_ema")
        path = path if path.is_file() else self.net_file(run_dir, tag, "G")
        self._load_net(self.netG, safe_load(path, self.device), str(path))
        return path.name

    @property
    def inference_generator(self) -> torch.nn.Module:
        """The generator a user gets from this run: the moving average if there is one, else G."""
        return self.netG_ema if self.netG_ema is not None else self.netG

    # -- data ---------------------------------------------------------------------------------
    def set_input(self, batch: dict) -> None:
        self.real_A = batch["A"].to(self.device, non_blocking=True)
        self.real_B = batch["B"].to(self.device, non_blocking=True) if "B" in batch else None
        self.image_paths = batch["A_paths"]

    def data_dependent_initialize(self, batch: dict) -> None:
        """Build netF's MLPs from real feature widths, then its optimizer (CUT does the same)."""
        self.set_input(batch)
        if self.opt.isTrain and not self.netF.initialized:
            with torch.no_grad():
                self.netF(self.netG.encode(self.real_A[:1], self.nce_layers), self.opt.num_patches)
        if self.opt.isTrain and any(True for _ in self.netF.parameters()):
            self.optimizers["F"] = torch.optim.Adam(self.netF.parameters(), lr=self.opt.lr,
                                                    betas=(self.opt.beta1, self.opt.beta2))

    # -- forward ------------------------------------------------------------------------------
    def forward(self) -> None:
        """fake_B = G(real_A) (and idt_B = G(real_B) for the identity NCE), one batched pass, or one
        pass each when A and B differ in size (--preprocess none or scale_width).

        The same pass yields the sources' NCE-layer features (PatchNCE's keys), which CUT computes
        again with separate encoder passes; with a flip they must come from the unflipped input.
        """
        use_idt = self.opt.isTrain and self.opt.nce_idt
        sources = [self.real_A, self.real_B] if use_idt else [self.real_A]
        self.flipped = bool(self.opt.isTrain and self.opt.flip_equivariance and torch.rand(()) < 0.5)
        if self.flipped:
            sources = [real.flip(3) for real in sources]
        if len({real.shape[1:] for real in sources}) > 1:
            passes = [self.netG.forward_with_features(real, self.nce_layers) for real in sources]
        else:
            fake, feats = self.netG.forward_with_features(torch.cat(sources), self.nce_layers)
            sizes = [real.shape[0] for real in sources]
            passes = zip(fake.split(sizes), zip(*[f.split(sizes) for f in feats]))
        (self.fake_B, keys_A), (self.idt_B, keys_B) = [*passes, (None, None)][:2]
        self.keys_A = None if self.flipped else [f.detach() for f in keys_A]
        self.keys_B = None if self.flipped or keys_B is None else [f.detach() for f in keys_B]

    @torch.inference_mode()
    def translate(self, images: torch.Tensor) -> torch.Tensor:
        """G(images) in float32; the input takes G's dtype (bfloat16 after prepare_inference with --amp)."""
        dtype = next(self.netG.parameters()).dtype
        with self.autocast():
            return self.netG(images.to(self.device, dtype)).float()

    def nce_loss(self, source: torch.Tensor, output: torch.Tensor,
                 source_feats: list[torch.Tensor] | None) -> torch.Tensor:
        """lambda_NCE * mean over layers of PatchNCE(G's features of the output at sampled patches,
        G's features of the source at the same patches). The keys are constants (as in CUT)."""
        feat_q = self.netG.encode(output, self.nce_layers)
        if self.flipped:
            feat_q = [f.flip(3) for f in feat_q]
        with torch.no_grad():
            feat_k = source_feats if source_feats is not None else self.netG.encode(source, self.nce_layers)
            pooled_k, ids = self.netF(feat_k, self.opt.num_patches)
        pooled_q, _ = self.netF(feat_q, self.opt.num_patches, ids)
        total = sum(patch_nce_loss(q, k, temperature=self.opt.nce_T, batch_size=source.shape[0],
                                   negatives_from_minibatch=self.opt.nce_includes_all_negatives_from_minibatch
                                   ).mean() for q, k in zip(pooled_q, pooled_k))
        return self.opt.lambda_NCE * total / len(self.nce_layers)

    def check_nce_layers(self) -> None:
        """ValueError naming --nce_layers when a layer is past G's last or named twice: encode() returns
        each existing layer once, while the loss divides by the count asked for."""
        layers, flag = self.nce_layers, f"--nce_layers {self.opt.nce_layers}"
        missing = [i for i in layers if not 0 <= i < len(self.netG.model)]
        if missing:
            raise ValueError(f"{flag}: --netG {self.opt.netG} has no layer {', '.join(map(str, missing))} (its "
                             f"layers are 0-{len(self.netG.model) - 1}); CUT's default is 0,4,8,12,16")
        repeated = sorted({i for i in layers if layers.count(i) > 1})
        if repeated:
            raise ValueError(f"{flag} repeats layer {', '.join(map(str, repeated))}: name each layer once "
                             "(CUT's default is 0,4,8,12,16)")

    # -- one iteration ------------------------------------------------------------------------
    def optimize(self, iteration: int) -> str:
        """forward, (revise), D step, G/F step -- the order of CUT's optimize_parameters."""
        stage, weight = self.schedule.stage(iteration), self.schedule.adversarial_weight(iteration)
        self.losses = {}
        with self.autocast():
            self.forward()
            self.revised_B = self.revise() if stage != ADVERSARIAL else None

        set_requires_grad(self.netD, True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_D = self.discriminator_loss(weight)
        check_finite(loss_D, "discriminator loss")
        loss_D.backward()
        self.optimizers["D"].step()

        set_requires_grad(self.netD, False)
        for name in ("G", "F"):
            if name in self.optimizers:
                self.optimizers[name].zero_grad(set_to_none=True)
        with self.autocast():
            loss_G = self.generator_loss(weight)
        check_finite(loss_G, "generator loss")
        loss_G.backward()
        for name in ("G", "F"):
            if name in self.optimizers:
                self.optimizers[name].step()
        if self.netG_ema is not None:
            update_ema(self.netG_ema, self.netG, decay=self.opt.ema_decay)
        return stage

    def revise(self) -> torch.Tensor:
        """Langevin revision of G's proposals under D's energy (stage 1 and blend)."""
        opt = self.opt
        revised, stats = coop.langevin_revise(self.netD, self.fake_B, steps=opt.coop_langevin_steps,
                                              step_size=opt.coop_step_size, ref_sigma=opt.coop_ref_sigma,
                                              noise=opt.coop_noise)
        self.losses.update(f_proposal=stats.score_start, langevin_change=stats.mean_abs_change,
                           langevin_improved=stats.frac_improved)
        return revised

    def batched(self, fn: Callable[[torch.Tensor], torch.Tensor], *batches: torch.Tensor) -> list[torch.Tensor]:
        """fn on each batch, as one concatenated pass: equal to separate passes with per-sample (instance)
        normalization, and faster; batch norm would mix the batches' statistics, and batches of different
        image sizes (A and B with --preprocess none) cannot be concatenated: those get separate passes."""
        if self.opt.normD == "batch" or len({batch.shape[1:] for batch in batches}) > 1:
            return [fn(batch) for batch in batches]
        return list(fn(torch.cat(batches)).split([batch.shape[0] for batch in batches]))

    def discriminator_loss(self, weight: float) -> torch.Tensor:
        """(1 - w) * [mean f(revised) - mean f(real)] + w * [(D_real + D_fake) / 2 + (lambda_R1 / 2) * R1]."""
        total = torch.zeros((), device=self.device)
        if weight < 1.0:
            f_data, f_revised = self.batched(functools.partial(coop.patch_score, self.netD),
                                             self.real_B, self.revised_B)
            ebm = coop.mle_loss(f_data, f_revised, energy_reg=self.opt.coop_energy_reg)
            self.losses.update(EBM=ebm.detach(), f_data=f_data.mean().detach(), f_revised=f_revised.mean().detach())
            total = total + (1.0 - weight) * ebm
        if weight > 0.0:
            real = self.real_B.detach().requires_grad_(self.opt.lambda_R1 > 0)
            scores_fake, scores_real = self.batched(self.netD, self.fake_B.detach(), real)
            d_fake = gan_loss(scores_fake, target_is_real=False, mode=self.opt.gan_mode)
            d_real = gan_loss(scores_real, target_is_real=True, mode=self.opt.gan_mode)
            self.losses.update(D_fake=d_fake.detach(), D_real=d_real.detach())
            total = total + weight * 0.5 * (d_fake + d_real)
            if self.opt.lambda_R1 > 0:
                r1 = r1_penalty(scores_real, real)
                self.losses["R1"] = r1.detach()
                total = total + weight * 0.5 * self.opt.lambda_R1 * r1
        return total

    def generator_loss(self, weight: float) -> torch.Tensor:
        """(1 - w) * lambda_teach * teach + w * lambda_GAN * G_GAN + PatchNCE (averaged with NCE_Y)."""
        opt = self.opt
        total = torch.zeros((), device=self.device)
        if weight < 1.0:
            teach = coop.teach_loss(self.revised_B, self.fake_B)
            self.losses["teach"] = teach.detach()
            total = total + (1.0 - weight) * opt.lambda_teach * teach
        if weight > 0.0 and opt.lambda_GAN > 0:
            g_gan = gan_loss(self.netD(self.fake_B), target_is_real=True, mode=opt.gan_mode) * opt.lambda_GAN
            self.losses["G_GAN"] = g_gan.detach()
            total = total + weight * g_gan
        zero = torch.zeros((), device=self.device)
        nce = self.nce_loss(self.real_A, self.fake_B, self.keys_A) if opt.lambda_NCE > 0 else zero
        self.losses["NCE"] = nce.detach()
        if opt.nce_idt and opt.lambda_NCE > 0:
            nce_y = self.nce_loss(self.real_B, self.idt_B, self.keys_B)
            self.losses["NCE_Y"] = nce_y.detach()
            nce = 0.5 * (nce + nce_y)
        total = total + nce
        if weight > 0.0:
            self.losses["G"] = total.detach()
        return total

    def on_stage_switch(self, iteration: int, calibration_items: Sequence[dict]) -> Calibration | None:
        """Called once before `iteration` when it starts a new stage (in a fresh or a resumed run).

        The first non-cooperative iteration (blend or adversarial): with --coop_calibrate_D, D's
        outputs are calibrated to the GAN loss (models/calibration.py) on `calibration_items`,
        training items with "A" and "B" images (C, H, W); G translates the A images. The first
        adversarial iteration: --coop_reset_optimizers clears the chosen Adam moments.
        Returns the calibration done, if any.
        """
        calibration = None
        if iteration == self.schedule.coop_iters and self.opt.coop_calibrate_D and calibration_items:
            with torch.no_grad(), self.autocast():
                reals = [item["B"][None].to(self.device) for item in calibration_items]
                fakes = [self.netG(item["A"][None].to(self.device)) for item in calibration_items]
                calibration = calibrate_discriminator(self.netD, reals, fakes, gan_mode=self.opt.gan_mode)
        if self.schedule.stage(iteration) == ADVERSARIAL:
            reset = {"none": [], "D": ["D"], "all": list(self.optimizers)}[self.opt.coop_reset_optimizers]
            for name in reset:
                self.optimizers[name].state.clear()
        return calibration
