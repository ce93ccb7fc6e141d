"""The template every model follows: networks, optimizers, learning-rate policy, state, visuals."""
from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import torch
from torch import nn

from models.coop import NonFiniteError
from models.reference_checkpoint import convert_state_dict
from util.checkpoint import CheckpointError, atomic_save, cpu_state_dict, non_finite_tensors, safe_load


def lr_factor(*, policy: str, epoch: int, n_epochs: int, n_epochs_decay: int, decay_every: int) -> float:
    """Learning-rate multiplier during (1-based) `epoch`.

    linear: 1 for the first n_epochs, then 1 - (epoch - n_epochs) / (n_epochs_decay + 1) (CUT's rule);
    step: 0.1 ** ((epoch - 1) // decay_every);  cosine: (1 + cos(pi * (epoch - 1) / n_epochs)) / 2;
    plateau: 0.2 ** ((epoch - 2) // 6) from epoch 2 -- what CUT's ReduceLROnPlateau(factor=0.2, patience=5,
    threshold=0.01) does, stepped after every epoch with CUT's metric, a constant 0 that never improves
    (torch stops cutting once a cut changes the rate by under 1e-8; this keeps cutting a rate that small).
    """
    if policy == "linear":
        return 1.0 - max(0, epoch - n_epochs) / float(n_epochs_decay + 1)
    if policy == "step":
        return 0.1 ** ((epoch - 1) // decay_every)
    if policy == "plateau":
        return 0.2 ** max(0, (epoch - 2) // 6)
    if policy == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch - 1, n_epochs) / max(n_epochs, 1)))
    raise ValueError(f"unknown --lr_policy {policy!r}")


def check_finite(value: torch.Tensor, quantity: str) -> None:
    """Stop before a NaN/Inf reaches the weights (one host sync; the caller adds the iteration)."""
    if not torch.isfinite(value).all():
        raise NonFiniteError(quantity)


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for param in net.parameters():
        param.requires_grad_(flag)


_SIZE_MISMATCH = re.compile(r"copying a param with shape torch\.Size\((\[.*?\])\) from checkpoint, "
                            r"the shape in current model is torch\.Size\((\[.*?\])\)\.?")


def mismatch_summary(error: str, *, lines: int = 3, keys: int = 4) -> str:
    """torch's load_state_dict error on one line: its first `lines` reasons (size mismatches,
    missing or unexpected keys, each listing at most `keys` keys), with counts of what is left out."""
    reasons = [line.strip() for line in error.splitlines()[1:] if line.strip()] or [error.strip()]
    shown = []
    for reason in reasons[:lines]:
        reason = _SIZE_MISMATCH.sub(r"\1 in the file, \2 in this network", reason)
        head, colon, listed = reason.partition(": ")
        names = listed.rstrip(". ").split(", ")
        if head.endswith("key(s) in state_dict") and len(names) > keys:
            reason = f"{head}{colon}{', '.join(names[:keys])} (+{len(names) - keys} more)"
        shown.append(reason)
    more = len(reasons) - len(shown)
    return "; ".join(shown) + (f"; ... and {more} more" if more else "")


class BaseModel:
    """Subclasses fill `self.nets`, `self.optimizers`, `loss_names`, `visual_names` and implement
    `set_input` and `optimize`. Networks are plain modules; wrapping (DDP) happens outside."""

    loss_names: list[str] = []
    visual_names: list[str] = []
    optional_nets: tuple[str, ...] = ()  # names in `nets` a checkpoint may lack: start_missing_net fills them

    @staticmethod
    def modify_commandline_options(parser: argparse.ArgumentParser, is_train: bool) -> argparse.ArgumentParser:
        return parser

    def __init__(self, opt: argparse.Namespace, device: torch.device):
        self.opt, self.device = opt, device
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.losses: dict[str, torch.Tensor] = {}

    def autocast(self) -> torch.autocast:
        """bfloat16 autocast with --amp (opt-in, for native bfloat16 hardware: far slower on AVX2-only
        CPUs; results differ from float32 beyond rounding); a no-op otherwise. bfloat16 keeps float32's exponent range,
        so no loss scaling is needed; losses are computed in float32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.opt.amp)

    # -- training -----------------------------------------------------------------------------
    def set_input(self, batch: dict) -> None:
        raise NotImplementedError

    def optimize(self, iteration: int) -> str:
        """One training iteration (0-based global index); returns the stage it ran."""
        raise NotImplementedError

    def data_dependent_initialize(self, batch: dict) -> None:
        """Create what depends on the data's shapes (CUT's netF) before optimizers and resume."""

    def set_learning_rate(self, epoch: int) -> float:
        opt = self.opt
        factor = lr_factor(policy=opt.lr_policy, epoch=epoch, n_epochs=opt.n_epochs,
                           n_epochs_decay=opt.n_epochs_decay, decay_every=opt.lr_decay_iters)
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = opt.lr * factor
        return opt.lr * factor

    def current_losses(self) -> dict[str, float]:
        """The last iteration's losses as numbers (one host sync; call only when logging)."""
        names = [n for n in self.loss_names if n in self.losses]
        values = torch.stack([self.losses[n].detach().float() for n in names]).tolist() if names else []
        return dict(zip(names, values))

    def current_visuals(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self.visual_names if getattr(self, name, None) is not None}

    def train(self) -> None:
        for net in self.nets.values():
            net.train()

    def eval(self) -> None:
        for net in self.nets.values():
            net.eval()

    def prepare_inference(self) -> None:
        """Eval mode, then the fastest way to run the same maths (training is over for this model):
        with --amp, weights are cast to bfloat16 once, instead of weights and activations being
        re-cast under autocast at every call (~10 % faster on CPU; 8-bit outputs within 1-2 levels
        of float32's, docs/results.md "Speed"). In float32 on CPU the generator's wide 3x3
        convolutions already run by Winograd (models/networks/winograd.py), in training too."""
        self.eval()
        if self.opt.amp:
            for net in self.nets.values():
                net.to(torch.bfloat16)

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"nets": {k: cpu_state_dict(v) for k, v in self.nets.items()},
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()}}

    def load_state_dict(self, state: dict) -> None:
        missing = [name for name in self.optional_nets if name in self.nets and name not in state["nets"]]
        for name, net in self.nets.items():
            if name not in missing:
                self._load_net(net, state["nets"][name], f"net {name}")
        for name in missing:
            self.start_missing_net(name)
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])

    def save_networks(self, run_dir: Path, tag: str | int) -> None:
        """{tag}_net_{name}.pth for each network: plain state dicts, refused if non-finite."""
        states = {name: cpu_state_dict(net) for name, net in self.nets.items()}
        for name, state in states.items():  # all checked before any is written: no mixed set of files
            bad = non_finite_tensors(state)
            if bad:
                raise CheckpointError(f"refusing to save net {name}: non-finite values in {', '.join(bad[:5])}")
        for name, state in states.items():
            atomic_save(state, self.net_file(run_dir, tag, name))

    def load_networks(self, run_dir: Path, tag: str | int, names: list[str]) -> None:
        missing = [name for name in names
                   if name in self.optional_nets and not self.net_file(run_dir, tag, name).is_file()]
        for name in names:
            if name not in missing:
                path = self.net_file(run_dir, tag, name)
                self._load_net(self.nets[name], safe_load(path, self.device), str(path))
        for name in missing:
            self.start_missing_net(name)

    def start_missing_net(self, name: str) -> None:
        """Fill network `name` of `optional_nets` that a checkpoint lacks; called after the others are
        loaded. Models that declare optional networks override it."""
        raise NotImplementedError(f"{type(self).__name__} declares {name} optional but cannot start it")

    @staticmethod
    def net_file(run_dir: Path, tag: str | int, name: str) -> Path:
        """RUN_DIR/TAG_net_NAME.pth, the weight file of one network (CUT's naming)."""
        return Path(run_dir) / f"{tag}_net_{name}.pth"

    @staticmethod
    def _load_net(net: nn.Module, state: dict, source: str) -> None:
        """Weights from this project's files or the reference CUT's (models/reference_checkpoint.py)."""
        state = convert_state_dict(state, net, source=source)
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise CheckpointError(f"{source} does not match this network's architecture -- the options "
                                  f"differ from training (see train_opt.txt): {mismatch_summary(str(err))}") from err
