"""Output calibration of a discriminator at CoopInit's switch to adversarial training.

Stage 1 trains D as an energy-based model by maximum likelihood, L = mean f(y_tilde) - mean f(y).
That loss is blind to any constant added to D's scores and to their scale relative to a GAN
loss, so after stage 1 D's raw per-patch scores sit far from the targets the adversarial loss
expects (measured: about 9 per patch on the demo, against LSGAN's 0 and 1; docs/coopinit.md).
The first adversarial steps then push huge gradients into G and D.

The calibration keeps D's ranking of images and moves its outputs to where the GAN loss expects
them: on a batch of real and generated images it fits the affine map s -> a s + b (a >= 0) of
D's raw scores that minimises D's own GAN loss, then folds it into D's last convolution, so the
saved network stays a plain PatchGAN. Nothing here knows about CUT.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.gan_loss import gan_loss

CALIBRATION_IMAGES = 16  # training images per domain the calibration is fitted on


@dataclass(frozen=True)
class Calibration:
    """The fitted map s -> scale * s + shift, and D's GAN loss on the calibration batch before and
    after it (plain floats, for the log)."""

    scale: float
    shift: float
    loss_before: float
    loss_after: float


def _group_weights(scores_real: Tensor, scores_fake: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All scores as one float64 vector, their targets (1 real, 0 fake) and weights such that each
    group counts half, as in D's loss 0.5 * (loss_real + loss_fake)."""
    real, fake = scores_real.detach().double().flatten(), scores_fake.detach().double().flatten()
    s = torch.cat([real, fake])
    t = torch.cat([torch.ones_like(real), torch.zeros_like(fake)])
    w = torch.cat([torch.full_like(real, 0.5 / real.numel()), torch.full_like(fake, 0.5 / fake.numel())])
    return s, t, w


def _lsgan_fit(s: Tensor, t: Tensor, w: Tensor) -> tuple[float, float]:
    """Weighted least squares of t on s: argmin_{a >= 0, b} sum w (a s + b - t)^2 (closed form)."""
    mean_s, mean_t = (w * s).sum(), (w * t).sum()
    var_s = (w * (s - mean_s) ** 2).sum()
    cov = (w * (s - mean_s) * (t - mean_t)).sum()
    a = (cov / var_s).clamp(min=0.0) if var_s > 0 else s.new_zeros(())
    return float(a), float(mean_t - a * mean_s)


def _logistic_fit(s: Tensor, t: Tensor, w: Tensor, *, ridge: float = 1e-2, iters: int = 50) -> tuple[float, float]:
    """argmin_{a >= 0, b} sum w BCE(sigmoid(a s + b), t) + ridge (a std(s))^2, by Newton's method on
    standardised scores. The small ridge keeps the fit finite when D separates the batch perfectly
    (the unpenalised optimum is then a -> infinity); its logits stay within a few units."""
    mean_s = (w * s).sum()
    std_s = (w * (s - mean_s) ** 2).sum().sqrt().clamp(min=1e-12)
    x = (s - mean_s) / std_s
    theta = s.new_zeros(2)  # slope and intercept on the standardised scores
    design = torch.stack([x, torch.ones_like(x)], 1)
    penalty = torch.diag(s.new_tensor([2.0 * ridge, 0.0]))
    for _ in range(iters):
        p = torch.sigmoid(design @ theta)
        grad = design.T @ (w * (p - t)) + penalty @ theta
        hess = (design.T @ (design * (w * p * (1 - p))[:, None]) + penalty
                + 1e-12 * torch.eye(2, dtype=s.dtype, device=s.device))
        step = torch.linalg.solve(hess, grad)
        theta = theta - step
        if step.abs().max() < 1e-10:
            break
    slope, intercept = float(theta[0].clamp(min=0.0)), float(theta[1])
    if theta[0] < 0:  # D ranks fakes higher: no ranking to keep, start at the loss's equilibrium
        p_mean = (w * t).sum()
        intercept = float(torch.log(p_mean / (1 - p_mean)))
    a = slope / float(std_s)
    return a, intercept - a * float(mean_s)


def fit_calibration(scores_real: Tensor, scores_fake: Tensor, *, gan_mode: str) -> tuple[float, float]:
    """The affine map (a, b), a >= 0, of raw scores that minimises D's GAN loss on this batch.

    scores_real, scores_fake: D's raw score maps on real and generated images, any shape
    ((N, 1, h, w) for a PatchGAN); every patch counts, each group weighs half.

    - lsgan: least squares of the targets (1 real, 0 fake) on the scores (closed form). The
      calibrated outputs then average exactly 0.5 over the batch, and the real and fake means
      reach 1 and 0 when D separates the two groups.
    - vanilla, nonsaturating (the same D loss, BCE with logits): logistic regression of the
      targets on the scores, with a small ridge so that a perfectly separated batch gives finite
      logits.
    - wgangp: the loss is linear in the scores and has no minimiser; the scale is kept (a = 1)
      and the scores are centred (b = -mean), since the stage-1 loss mean f(y_tilde) - mean f(y)
      is already the critic's loss up to that offset.

    a >= 0 keeps D's ranking: if D scores the fakes above the reals (a < 0 would fit best), a = 0
    and b is the loss's equilibrium output (0.5 for lsgan, logit 0 for BCE): D keeps its features
    but outputs a constant until the adversarial steps retrain its last layer.
    Raises ValueError for an unknown gan_mode.
    """
    s, t, w = _group_weights(scores_real, scores_fake)
    if gan_mode == "lsgan":
        return _lsgan_fit(s, t, w)
    if gan_mode in ("vanilla", "nonsaturating"):
        return _logistic_fit(s, t, w)
    if gan_mode == "wgangp":
        return 1.0, float(-(w * s).sum())
    raise ValueError(f"unknown --gan_mode {gan_mode!r}")


def output_layer(discriminator: nn.Module) -> nn.Conv2d | nn.Linear:
    """D's last convolution or linear layer, which produces its raw scores (one output channel): the
    final 1-channel convolution of a PatchGAN, the final 1-unit layer of an MLP critic.

    Raises ValueError if D's last such layer has more than one output."""
    layers = [m for m in discriminator.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    outputs = (layers[-1].out_channels if isinstance(layers[-1], nn.Conv2d) else layers[-1].out_features) \
        if layers else 0
    if outputs != 1:
        raise ValueError(f"cannot calibrate {type(discriminator).__name__}: its last layer must output one score")
    return layers[-1]


@torch.no_grad()
def fold_affine(discriminator: nn.Module, *, scale: float, shift: float) -> None:
    """Make D(y) -> scale * D(y) + shift exact by rescaling the last layer's weight and bias (D's
    scores must be that layer's output, unchanged by anything after it).

    The shift needs a bias: a last layer built with bias=False raises ValueError."""
    conv = output_layer(discriminator)
    if conv.bias is None:
        raise ValueError("cannot shift D's scores: its last layer has no bias")
    conv.weight.mul_(scale)
    conv.bias.mul_(scale).add_(shift)


def calibrate_discriminator(discriminator: nn.Module, real: Sequence[Tensor], fake: Sequence[Tensor], *,
                            gan_mode: str) -> Calibration:
    """Fit (a, b) on D's scores of the `real` and `fake` batches ((N, C, H, W) each, pixels in [-1, 1];
    sizes may differ between batches) and fold the map into D, in place."""
    with torch.no_grad():
        scores_real = torch.cat([discriminator(y).float().flatten() for y in real])
        scores_fake = torch.cat([discriminator(y).float().flatten() for y in fake])
        scale, shift = fit_calibration(scores_real, scores_fake, gan_mode=gan_mode)

        def d_loss(a: float, b: float) -> float:
            return float(0.5 * (gan_loss(a * scores_real + b, target_is_real=True, mode=gan_mode)
                                + gan_loss(a * scores_fake + b, target_is_real=False, mode=gan_mode)))

        before, after = d_loss(1.0, 0.0), d_loss(scale, shift)
    fold_affine(discriminator, scale=scale, shift=shift)
    return Calibration(scale=scale, shift=shift, loss_before=before, loss_after=after)
