"""Which CoopInit stage an iteration belongs to: the one place that decides it."""
from __future__ import annotations

from dataclasses import asdict, dataclass

COOP, BLEND, ADVERSARIAL = "coop", "blend", "adversarial"
# --coop_epochs's default: a share of the schedule, so a short run and CUT's 400 epochs both get a
# stage in proportion (docs/coopinit.md, "Stage length", has the measurements behind the number).
COOP_STAGE_DEFAULT = "17%"


def coop_epochs_from_flag(value: str, *, total_epochs: int) -> float:
    """Stage-1 length in epochs from --coop_epochs: a number of epochs ("2", "0.5") or a percentage
    of the whole schedule, n_epochs + n_epochs_decay ("5%": 20 of CUT's 400 epochs, 0.4 of 8).

    Raises ValueError (naming the flag and the accepted forms) on anything else or a negative value.
    """
    text = str(value).strip()
    try:
        epochs = float(text[:-1]) / 100 * total_epochs if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"--coop_epochs {value!r}: expected a number of epochs (e.g. 2 or 0.5) or a "
                         "percentage of --n_epochs + --n_epochs_decay (e.g. 5%)") from None
    if epochs < 0:
        raise ValueError(f"--coop_epochs must be >= 0 (got {value!r})")
    return epochs


@dataclass(frozen=True)
class StageSchedule:
    """Iterations [0, coop_iters) are cooperative, the next `blend_iters` blend into adversarial
    training with weight w = (t - coop_iters + 1) / (blend_iters + 1), then adversarial only.

    Saved with the training state, so a resumed run keeps its switch point even if the
    batch size or dataset size changed.
    """

    coop_iters: int
    blend_iters: int = 0

    @classmethod
    def from_epochs(cls, *, coop_epochs: float, iters_per_epoch: int, blend_iters: int) -> "StageSchedule":
        # A positive stage is at least one iteration: a share of a tiny schedule must not turn CoopInit off.
        coop_iters = max(1, round(coop_epochs * iters_per_epoch)) if coop_epochs > 0 else 0
        return cls(coop_iters=coop_iters, blend_iters=blend_iters)

    def stage(self, iteration: int) -> str:
        """Stage of the 0-based training iteration."""
        if iteration < self.coop_iters:
            return COOP
        if iteration < self.coop_iters + self.blend_iters:
            return BLEND
        return ADVERSARIAL

    def first_iteration(self, stage: str) -> int:
        """1-based number of the first iteration of `stage` (what the run log's `iter` counts)."""
        return {COOP: 1, BLEND: self.coop_iters + 1, ADVERSARIAL: self.coop_iters + self.blend_iters + 1}[stage]

    def adversarial_weight(self, iteration: int) -> float:
        """w in (1 - w) * coop_loss + w * adversarial_loss: 0 in stage 1, 1 in stage 2."""
        stage = self.stage(iteration)
        if stage == COOP:
            return 0.0
        if stage == ADVERSARIAL:
            return 1.0
        return (iteration - self.coop_iters + 1) / (self.blend_iters + 1)

    def state_dict(self) -> dict:
        return asdict(self)
