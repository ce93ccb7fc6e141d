"""Unit tests for models/coop.py (the generic cooperative-learning module)."""
import weakref

import pytest
import torch
from torch import nn

from models.coop import (
    NonFiniteError,
    energy,
    langevin_revise,
    mle_loss,
    patch_score,
    teach_loss,
)


class Quadratic(nn.Module):
    """f(y) = -c/2 ||y - mu||^2 per sample, so grad_y f = -c (y - mu)."""

    def __init__(self, mu: torch.Tensor, c: float) -> None:
        super().__init__()
        self.mu = nn.Parameter(mu.clone())
        self.c = c

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return -0.5 * self.c * (y - self.mu).pow(2).flatten(1).sum(1)


class PatchMap(nn.Module):
    """A tiny PatchGAN-like D returning (N, 1, h, w) raw scores."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 1, 3))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


def test_patch_score_sums_patches_for_every_output_shape():
    y = torch.randn(2, 3, 6, 6)
    d = PatchMap()
    assert torch.allclose(patch_score(d, y), d(y).sum((1, 2, 3)))
    assert torch.equal(patch_score(lambda t: t[:, :1, 0, 0], y), y[:, 0, 0, 0])
    assert torch.equal(patch_score(lambda t: t[:, 0, 0, 0], y), y[:, 0, 0, 0])


def test_energy_is_reference_term_minus_score():
    y = torch.tensor([[1.0, 2.0], [0.0, -3.0]])
    scores = torch.tensor([0.5, -1.0])
    expected = torch.tensor([5.0 / (2 * 4.0) - 0.5, 9.0 / (2 * 4.0) + 1.0])
    assert torch.allclose(energy(scores, y, ref_sigma=2.0), expected)


@pytest.mark.parametrize("steps", [1, 3])
def test_langevin_matches_hand_computed_update_on_quadratic(steps):
    mu, c, s_ref, delta = torch.tensor([[1.0, -2.0, 0.5]]), 0.8, 1.5, 0.3
    d = Quadratic(mu, c)
    start = torch.tensor([[0.2, 0.4, -1.0], [2.0, 0.0, 1.0]])
    expected = start.clone()
    for _ in range(steps):  # grad_y E = y / s^2 + c (y - mu)
        expected = expected - delta**2 / 2 * (expected / s_ref**2 + c * (expected - mu))
    revised, stats = langevin_revise(
        d, start, steps=steps, step_size=delta, ref_sigma=s_ref, noise=False
    )
    assert torch.allclose(revised, expected, atol=1e-6)
    f0, f_k = d(start).detach(), d(expected).detach()
    assert torch.allclose(stats.mean_abs_change, (expected - start).abs().mean(), atol=1e-6)
    assert torch.allclose(stats.score_start, f0.mean(), atol=1e-6)
    assert torch.allclose(stats.score_end, f_k.mean(), atol=1e-6)
    assert stats.frac_improved.item() == (f_k > f0).float().mean().item()


def test_noisy_chain_climbs_a_fixed_energy_on_average():
    d = Quadratic(torch.full((1, 4), 2.0), c=4.0)
    start = torch.zeros(512, 4)
    gen = torch.Generator().manual_seed(0)
    revised, stats = langevin_revise(
        d, start, steps=20, step_size=0.1, ref_sigma=10.0, generator=gen
    )
    assert stats.score_end > stats.score_start
    assert stats.frac_improved > 0.9
    assert (revised.mean(0) > 0.1).all()  # moved towards mu, not only jittered


def test_mle_loss_step_raises_f_on_data_and_lowers_it_on_revised():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))
    data, revised = torch.randn(64, 2) + 2.0, torch.randn(64, 2) - 2.0
    before_data, before_rev = patch_score(d, data).mean(), patch_score(d, revised).mean()
    loss = mle_loss(patch_score(d, data), patch_score(d, revised))
    assert torch.allclose(loss, before_rev - before_data)
    loss.backward()
    with torch.no_grad():
        for p in d.parameters():
            p -= 0.05 * p.grad
    assert patch_score(d, data).mean() > before_data
    assert patch_score(d, revised).mean() < before_rev


def test_mle_loss_energy_regulariser():
    f_data, f_rev = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    expected = -1.0 - 2.0 + 0.1 * (5.0 + 2.0)
    assert torch.isclose(mle_loss(f_data, f_rev, energy_reg=0.1), torch.tensor(expected))


def test_teach_loss_gradient_reaches_generator_only():
    torch.manual_seed(0)
    g, d = nn.Linear(3, 2), nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(5, 3)
    proposal = g(x)
    revised, _ = langevin_revise(d, proposal, steps=2, step_size=0.1, ref_sigma=1.0)
    target = revised.clone().requires_grad_(True)  # a leaf that must receive no gradient
    loss = teach_loss(target, proposal)
    assert torch.allclose(loss, ((revised - proposal) ** 2).mean())
    loss.backward()
    assert target.grad is None
    assert all(p.grad is None for p in d.parameters())
    expected = 2 * (proposal - revised) / proposal.numel()
    assert torch.allclose(g.weight.grad, expected.t() @ x, atol=1e-6)


def test_langevin_leaves_discriminator_state_and_returns_no_graph():
    d = PatchMap().train()
    first, *rest = list(d.parameters())
    first.grad = torch.full_like(first, 0.25)
    kept_grad = first.grad
    rest[0].requires_grad_(False)
    flags = [p.requires_grad for p in d.parameters()]
    start = torch.randn(3, 3, 8, 8, requires_grad=True) * 1.0  # non-leaf, like G(x)
    start_copy = start.detach().clone()

    revised, stats = langevin_revise(d, start, steps=3, step_size=0.05, ref_sigma=1.0)

    assert first.grad is kept_grad and torch.equal(kept_grad, torch.full_like(first, 0.25))
    assert all(p.grad is None for p in rest)
    assert [p.requires_grad for p in d.parameters()] == flags
    assert d.training
    assert torch.equal(start.detach(), start_copy)
    returned = [revised, *vars(stats).values()]
    assert not any(t.requires_grad or t.grad_fn is not None for t in returned)
    assert all(t.dim() == 0 for t in vars(stats).values())


def test_langevin_keeps_discriminator_eval_mode():
    d = PatchMap().eval()
    langevin_revise(d, torch.randn(2, 3, 8, 8), steps=2, step_size=0.05, ref_sigma=1.0)
    assert not d.training


def test_non_finite_image_raises():
    d = PatchMap()
    start = torch.randn(2, 3, 8, 8)
    start[1, 0, 3, 3] = float("nan")
    with pytest.raises(NonFiniteError, match="langevin image") as info:
        langevin_revise(d, start, steps=2, step_size=0.05, ref_sigma=1.0)
    assert isinstance(info.value, RuntimeError)
    assert info.value.quantity == "langevin image"


def test_non_finite_score_raises_even_when_image_stays_finite():
    # f = 0 * sum(y) + inf: infinite score, zero gradient, so the image stays finite.
    inf_score = lambda y: y.flatten(1).sum(1) * 0.0 + float("inf")  # noqa: E731
    with pytest.raises(NonFiniteError, match="langevin energy") as info:
        langevin_revise(inf_score, torch.randn(2, 3), steps=2, step_size=0.1, ref_sigma=1.0)
    assert info.value.quantity == "langevin energy"


def test_non_finite_score_mid_chain_is_caught():
    calls = []

    def inf_once(y: torch.Tensor) -> torch.Tensor:  # infinite score on the first step only
        calls.append(None)
        return y.flatten(1).sum(1) * 0.0 + (float("inf") if len(calls) == 1 else 0.0)

    with pytest.raises(NonFiniteError, match="langevin energy"):
        langevin_revise(inf_once, torch.randn(2, 3), steps=3, step_size=0.1, ref_sigma=1.0)


def _peak_live_saved_tensors(steps: int) -> int:
    """Largest number of autograd-saved tensors alive at once during a chain."""
    live, peak = 0, 0

    class Holder:
        def __init__(self, t: torch.Tensor) -> None:
            self.t = t

    def release() -> None:
        nonlocal live
        live -= 1

    def pack(t: torch.Tensor) -> Holder:
        nonlocal live, peak
        holder = Holder(t)
        weakref.finalize(holder, release)
        live += 1
        peak = max(peak, live)
        return holder

    torch.manual_seed(0)
    d = PatchMap()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda h: h.t):
        langevin_revise(d, torch.randn(2, 3, 8, 8), steps=steps, step_size=0.05, ref_sigma=1.0)
    assert live == 0
    return peak


def test_graph_memory_does_not_grow_with_steps():
    one = _peak_live_saved_tensors(1)
    assert one > 0  # the hooks do see the chain's graph
    assert _peak_live_saved_tensors(8) == one


def test_generator_seed_reproduces_the_chain():
    d = PatchMap()
    start = torch.randn(2, 3, 8, 8)

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return langevin_revise(d, start, steps=4, step_size=0.1, ref_sigma=1.0, generator=gen)[0]

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))
