"""D's output calibration at CoopInit's switch (models/calibration.py) and its use by CUTModel/train.py."""
import pytest
import torch
from torch import nn

import train
from conftest import run_dir
from models.calibration import CALIBRATION_IMAGES, calibrate_discriminator, fit_calibration, fold_affine
from models.coop import mle_loss, patch_score
from models.cut_model import CUTModel
from models.gan_loss import gan_loss
from models.networks.discriminators import NLayerDiscriminator
from util.run_log import read_jsonl


def d_loss(real: torch.Tensor, fake: torch.Tensor, mode: str) -> float:
    return float(0.5 * (gan_loss(real, target_is_real=True, mode=mode) + gan_loss(fake, target_is_real=False, mode=mode)))


def overlapping_scores(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw scores as stage 1 leaves them: large, offset, real above fake on average but overlapping."""
    gen = torch.Generator().manual_seed(seed)
    return 9.0 + 2.0 * torch.randn(4, 1, 6, 6, generator=gen), 7.5 + 2.0 * torch.randn(4, 1, 6, 6, generator=gen)


def test_lsgan_fit_sends_separated_groups_to_the_targets():
    gen = torch.Generator().manual_seed(0)
    real = 300.0 + 0.01 * torch.randn(64, generator=gen)
    fake = 200.0 + 0.01 * torch.randn(64, generator=gen)
    a, b = fit_calibration(real, fake, gan_mode="lsgan")
    assert abs(float((a * real + b).mean()) - 1.0) < 1e-3
    assert abs(float((a * fake + b).mean()) - 0.0) < 1e-3


def test_lsgan_fit_is_the_loss_minimising_affine_map_and_keeps_the_order():
    real, fake = overlapping_scores()
    a, b = fit_calibration(real, fake, gan_mode="lsgan")
    assert a > 0  # the ranking is kept
    calibrated = torch.cat([(a * real + b).flatten(), (a * fake + b).flatten()])
    assert abs(float(calibrated.mean()) - 0.5) < 1e-6  # the mean output is the mean target
    best = d_loss(a * real + b, a * fake + b, "lsgan")
    assert best < d_loss(real, fake, "lsgan") / 50  # the raw scores were far from 0 and 1
    for da, db in ((1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3)):  # a minimum, not just better
        assert d_loss((a + da) * real + b + db, (a + da) * fake + b + db, "lsgan") > best


@pytest.mark.parametrize("mode", ["vanilla", "nonsaturating"])
def test_logistic_fit_minimises_the_bce_loss_and_balances_the_batch(mode):
    real, fake = overlapping_scores(1)
    a, b = fit_calibration(real, fake, gan_mode=mode)
    assert a > 0
    probs = torch.sigmoid(torch.cat([(a * real + b).flatten(), (a * fake + b).flatten()]))
    assert abs(float(probs.mean()) - 0.5) < 1e-4  # intercept stationarity: the mean D(y) is the mean label
    best = d_loss(a * real + b, a * fake + b, mode)
    assert best < d_loss(real, fake, mode) and best < d_loss(0 * real, 0 * fake, mode)
    for da in (0.05 * a, -0.05 * a):
        assert d_loss((a + da) * real + b, (a + da) * fake + b, mode) >= best - 1e-4  # ridge: near the optimum


def test_logistic_fit_stays_finite_when_d_separates_perfectly():
    real, fake = torch.full((32,), 5.0) + torch.linspace(0, 1, 32), torch.full((32,), -5.0) + torch.linspace(0, 1, 32)
    a, b = fit_calibration(real, fake, gan_mode="vanilla")
    logits = torch.cat([a * real + b, a * fake + b])
    assert torch.isfinite(logits).all() and logits.abs().max() < 20
    assert torch.sigmoid(a * real + b).min() > 0.9 and torch.sigmoid(a * fake + b).max() < 0.1


@pytest.mark.parametrize("mode, equilibrium", [("lsgan", 0.5), ("vanilla", 0.0)])
def test_a_reversed_ranking_is_not_inverted_but_flattened(mode, equilibrium):
    real, fake = overlapping_scores()
    a, b = fit_calibration(fake, real, gan_mode=mode)  # D scores the generated images higher
    assert a == 0.0 and b == pytest.approx(equilibrium, abs=1e-6)


def test_wgan_scores_are_centred_with_their_scale_kept():
    real, fake = overlapping_scores()
    a, b = fit_calibration(real, fake, gan_mode="wgangp")
    assert a == 1.0
    assert abs(float(0.5 * ((real + b).mean() + (fake + b).mean()))) < 1e-5


def test_unknown_gan_mode_is_refused():
    with pytest.raises(ValueError, match="gan_mode"):
        fit_calibration(torch.ones(3), torch.zeros(3), gan_mode="hinge")


def test_folding_into_the_patchgan_is_exact():
    torch.manual_seed(0)
    d = NLayerDiscriminator(input_nc=3, ndf=8)
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    before = d(y).detach()
    fold_affine(d, scale=0.03, shift=0.4)
    assert torch.allclose(d(y), 0.03 * before + 0.4, atol=1e-6)
    assert [k for k, _ in d.state_dict().items()] == [k for k, _ in NLayerDiscriminator(input_nc=3, ndf=8).state_dict().items()]


def test_calibrating_a_patchgan_hits_the_targets_and_keeps_its_ranking():
    """After calibration D's outputs on the calibration batch average the LSGAN target (0.5) and its
    ranking of every patch is unchanged; on a batch D separates, the group means reach 1 and 0."""
    torch.manual_seed(0)
    d = NLayerDiscriminator(input_nc=3, ndf=8)
    real = [torch.rand(1, 3, 32, 32) * 2 - 1 for _ in range(4)]
    fake = [torch.rand(1, 3, 32, 32) * 0.2 - 0.1 for _ in range(4)]
    optimizer = torch.optim.Adam(d.parameters(), lr=1e-3)
    for _ in range(30):  # maximum likelihood as in stage 1: D learns to score the reals higher
        optimizer.zero_grad()
        mle_loss(patch_score(d, torch.cat(real)), patch_score(d, torch.cat(fake))).backward()
        optimizer.step()
    with torch.no_grad():  # and its raw scores are large and offset, as stage 1 leaves them
        d.model[-1].weight.mul_(30.0)
        d.model[-1].bias.add_(40.0)
    raw = torch.cat([d(y).detach().flatten() for y in real + fake])
    result = calibrate_discriminator(d, real, fake, gan_mode="lsgan")
    out = torch.cat([d(y).detach().flatten() for y in real + fake])
    assert abs(float(out.mean()) - 0.5) < 1e-3
    assert torch.equal(torch.argsort(out), torch.argsort(raw))
    assert result.loss_after < result.loss_before and result.scale > 0
    assert abs(float(torch.cat([d(y).detach().flatten() for y in real]).mean()) - 1.0) < 0.05
    assert abs(float(torch.cat([d(y).detach().flatten() for y in fake]).mean())) < 0.05


def test_a_last_layer_without_bias_is_refused():
    d = nn.Sequential(nn.Conv2d(3, 1, 1, bias=False))
    with pytest.raises(ValueError, match="bias"):
        fold_affine(d, scale=1.0, shift=0.5)


def test_cut_model_refuses_calibration_it_cannot_do(tiny_train_args):
    argv = tiny_train_args("nobias", netD="pixel", normD="batch", coop_calibrate_D="True")
    assert train.main(argv) == 2


@pytest.mark.parametrize("calibrate", [True, False])
def test_training_calibrates_once_at_the_first_adversarial_iteration(tiny_train_args, monkeypatch, calibrate):
    calls = []
    original = CUTModel.on_stage_switch

    def spy(model, iteration, items):
        last = dict(model.netD.named_parameters())
        before = {k: v.detach().clone() for k, v in last.items()}
        result = original(model, iteration, items)
        changed = {k for k, v in last.items() if not torch.equal(v, before[k])}
        calls.append((iteration, len(items), result is not None, changed))
        return result
    monkeypatch.setattr(CUTModel, "on_stage_switch", spy)
    argv = tiny_train_args("calib", n_epochs=2, coop_epochs=0.5, coop_calibrate_D=str(calibrate))
    assert train.main(argv) == 0
    last = f"model.{len(NLayerDiscriminator(input_nc=3, ndf=8).model) - 1}"
    assert calls == [(2, 4, calibrate, {f"{last}.weight", f"{last}.bias"} if calibrate else set())]
    log = (run_dir(argv) / "loss_log.txt").read_text()
    assert ("D's outputs calibrated for --gan_mode lsgan on 4 real and 4 generated" in log) == calibrate
    assert CALIBRATION_IMAGES >= 4


def test_calibration_happens_where_the_blend_starts(tiny_train_args, monkeypatch):
    seen = []
    original = CUTModel.on_stage_switch

    def spy(model, iteration, items):
        result = original(model, iteration, items)
        seen.append((iteration, model.schedule.stage(iteration), result is not None))
        return result
    monkeypatch.setattr(CUTModel, "on_stage_switch", spy)
    argv = tiny_train_args("blend", n_epochs=2, coop_epochs=0.5, coop_blend_iters=2, coop_calibrate_D="True")
    assert train.main(argv) == 0
    assert seen == [(2, "blend", True), (4, "adversarial", False)]
    stages = [e["stage"] for e in read_jsonl(run_dir(argv) / "loss_log.jsonl")]
    assert stages[:5] == ["coop", "coop", "blend", "blend", "adversarial"]
