"""Which CoopInit stage an iteration belongs to: the one place that decides it."""
from __future__ import annotations

from dataclasses import asdict, dataclass

COOP, BLEND, ADVERSARIAL = "coop", "blend", "adversarial"


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
        return cls(coop_iters=round(coop_epochs * iters_per_epoch), blend_iters=blend_iters)

    def stage(self, iteration: int) -> str:
        """Stage of the 0-based training iteration."""
        if iteration < self.coop_iters:
            return COOP
        if iteration < self.coop_iters + self.blend_iters:
            return BLEND
        return ADVERSARIAL

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
