"""2-D mode coverage: plain GAN vs CoopInit (cooperative warm-up, then the same GAN).

Datasets (the VEEGAN/PacGAN convention): a ring of 8 Gaussians (radius 2, std 0.02) and a
5x5 grid of 25 Gaussians (centres in {-4, -2, 0, 2, 4}^2, std 0.05).
All arms share seeds, initial networks, optimisers, data and latent streams and the iteration
budget. Arms:
- gan:            non-saturating GAN for all ``--iters`` iterations;
- coopinit:       first ``--coop-iters`` iterations cooperative with models/coop.py (Langevin
                  revision of G(z) on D's energy, MLE loss for D, teaching loss for G), then the
                  same GAN; Adam states carry over the switch (the spec's default);
- coopinit_reset: as coopinit, with fresh Adam states for G and D at the switch;
- coopinit_calibrated: as coopinit, with D's output calibrated to the GAN loss at the switch
                  (models/calibration.py, on one batch of real and generated points) and D's
                  Adam state reset (--coop_calibrate_D true --coop_reset_optimizers D), the
                  product's default switch.

Metrics on ``--eval-samples`` generated points (criterion of VEEGAN/PacGAN):
- a sample is high quality if it lies within 3 std of some centre;
- a mode is covered if at least ``--min-count`` samples lie within 3 std of its centre;
- reverse KL(gen || uniform) of the histogram of samples over their nearest centres.

Run: .venv/bin/python -m bench.mode_coverage            (full: ~15 CPU-min, ~8 min on 2 idle cores)
     .venv/bin/python -m bench.mode_coverage --quick    (~1-2 min smoke check)
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.calibration import calibrate_discriminator
from models.coop import langevin_revise, mle_loss, patch_score, teach_loss

RESULTS = Path(__file__).resolve().parent / "results"
ARMS = ("gan", "coopinit", "coopinit_reset", "coopinit_calibrated")


@dataclass(frozen=True)
class Mixture:
    """Equal-weight isotropic Gaussian mixture in R^2."""

    name: str
    centres: Tensor  # (M, 2)
    std: float

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        idx = torch.randint(len(self.centres), (n,), generator=generator)
        return self.centres[idx] + self.std * torch.randn(n, 2, generator=generator)

    @property
    def rms_radius(self) -> float:
        """sqrt(E ||y||^2) of the data (std is negligible next to the centres)."""
        return self.centres.pow(2).sum(1).mean().sqrt().item()


def make_mixture(name: str) -> Mixture:
    if name == "ring":
        angles = torch.arange(8) * (2 * math.pi / 8)
        return Mixture(name, 2.0 * torch.stack((angles.cos(), angles.sin()), 1), 0.02)
    if name == "grid":
        axis = torch.arange(-4.0, 5.0, 2.0)
        return Mixture(name, torch.cartesian_prod(axis, axis), 0.05)
    raise ValueError(f"unknown dataset {name!r}")


@dataclass(frozen=True)
class Config:
    iters: int = 4000
    coop_iters: int = 1000
    batch: int = 256
    lr: float = 1e-3  # Adam (0.5, 0.999) for both players in both stages
    z_dim: int = 2
    hidden: int = 128
    langevin_steps: int = 15
    # delta: chain noise delta * sqrt(K) ~ 0.39, a fifth of the mode spacing (1.53 ring, 2 grid).
    step_size: float = 0.1
    # s_ref = ref_scale * data RMS radius: log q varies by <= 1/8 nat over the data.
    ref_scale: float = 2.0
    noise: bool = True
    # alpha > 0 bounds f: with alpha = 0 (--energy-reg 0) the 2-D coop stage collapsed G.
    energy_reg: float = 0.1
    eval_samples: int = 2500
    min_count: int = 20


def mlp(n_in: int, n_out: int, *, hidden: int, act: Callable[[], nn.Module]) -> nn.Sequential:
    """Three hidden layers of ``hidden`` units."""
    return nn.Sequential(
        nn.Linear(n_in, hidden), act(),
        nn.Linear(hidden, hidden), act(),
        nn.Linear(hidden, hidden), act(),
        nn.Linear(hidden, n_out),
    )  # fmt: skip


def coverage(samples: Tensor, mix: Mixture, *, min_count: int) -> dict[str, float]:
    """Modes covered, share of high-quality samples and reverse KL of the mode histogram."""
    dist = torch.cdist(samples, mix.centres)
    near = dist <= 3 * mix.std
    hist = torch.bincount(dist.argmin(1), minlength=len(mix.centres)).double() / len(samples)
    nz = hist[hist > 0]
    return {
        "modes": int((near.sum(0) >= min_count).sum()),
        "high_quality": near.any(1).double().mean().item(),
        "reverse_kl": (nz * (nz * len(mix.centres)).log()).sum().item(),
    }


@dataclass
class Players:
    """G, D and their optimisers (Adam, betas (0.5, 0.999), the same in both stages)."""

    g: nn.Module
    d: nn.Module
    lr: float

    def __post_init__(self) -> None:
        self.reset_optimisers()

    def reset_optimisers(self) -> None:
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=self.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=self.lr, betas=(0.5, 0.999))


def descend(opt: torch.optim.Optimizer, loss: Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def gan_step(pl: Players, real: Tensor, z: Tensor) -> None:
    """Non-saturating GAN: D minimises softplus(-D(y)) + softplus(D(G(z))), G softplus(-D(G(z)))."""
    fake = pl.g(z)
    descend(pl.opt_d, F.softplus(-pl.d(real)).mean() + F.softplus(pl.d(fake.detach())).mean())
    descend(pl.opt_g, F.softplus(-pl.d(fake)).mean())


def coop_step(
    pl: Players, real: Tensor, z: Tensor, *, cfg: Config, ref_sigma: float, noise_gen: torch.Generator
) -> Tensor:
    """One cooperative iteration; returns (mean change, frac improved, f start, f end)."""
    fake = pl.g(z)
    revised, stats = langevin_revise(
        pl.d, fake, steps=cfg.langevin_steps, step_size=cfg.step_size, ref_sigma=ref_sigma,
        noise=cfg.noise, generator=noise_gen,
    )  # fmt: skip
    scores_data, scores_revised = patch_score(pl.d, real), patch_score(pl.d, revised)
    descend(pl.opt_d, mle_loss(scores_data, scores_revised, energy_reg=cfg.energy_reg))
    descend(pl.opt_g, teach_loss(revised, fake))
    return torch.stack(
        (stats.mean_abs_change, stats.frac_improved, stats.score_start, stats.score_end)
    )


class Job(NamedTuple):
    dataset: str
    seed: int
    arm: str
    cfg: Config


def run_arm(job: Job) -> dict:
    """Train one arm for ``cfg.iters`` iterations; evaluate at the switch point and the end."""
    torch.set_num_threads(1)  # the pool runs one job per core
    dataset, seed, arm, cfg = job
    mix = make_mixture(dataset)
    ref_sigma = cfg.ref_scale * mix.rms_radius
    torch.manual_seed(seed)  # same initial G and D in every arm
    pl = Players(
        g=mlp(cfg.z_dim, 2, hidden=cfg.hidden, act=nn.ReLU),
        d=mlp(2, 1, hidden=cfg.hidden, act=lambda: nn.LeakyReLU(0.2)),
        lr=cfg.lr,
    )
    data_gen = torch.Generator().manual_seed(seed)  # same data and z stream in every arm
    noise_gen = torch.Generator().manual_seed(seed + 1_000_003)
    eval_z = torch.randn(
        cfg.eval_samples, cfg.z_dim, generator=torch.Generator().manual_seed(seed + 2_000_003)
    )
    coop_iters = 0 if arm == "gan" else cfg.coop_iters
    chain = torch.zeros(4)
    result: dict = {"dataset": dataset, "seed": seed, "arm": arm}
    start = time.perf_counter()
    for it in range(cfg.iters):
        if it == cfg.coop_iters:
            with torch.no_grad():
                at_switch = pl.g(eval_z)
            result["at_switch"] = coverage(at_switch, mix, min_count=cfg.min_count)
            result["samples_at_switch"] = at_switch[:1000].tolist()
            if arm == "coopinit_reset":
                pl.reset_optimisers()
            if arm == "coopinit_calibrated":  # its own stream: the data stream stays the same in every arm
                calib_gen = torch.Generator().manual_seed(seed + 3_000_003)
                with torch.no_grad():
                    fake = pl.g(torch.randn(cfg.batch, cfg.z_dim, generator=calib_gen))
                calibrate_discriminator(pl.d, [mix.sample(cfg.batch, calib_gen)], [fake], gan_mode="nonsaturating")
                pl.opt_d = torch.optim.Adam(pl.d.parameters(), lr=pl.lr, betas=(0.5, 0.999))
        real = mix.sample(cfg.batch, data_gen)
        z = torch.randn(cfg.batch, cfg.z_dim, generator=data_gen)
        if it < coop_iters:
            chain += coop_step(pl, real, z, cfg=cfg, ref_sigma=ref_sigma, noise_gen=noise_gen)
        else:
            gan_step(pl, real, z)
    with torch.no_grad():
        samples = pl.g(eval_z)
    result |= coverage(samples, mix, min_count=cfg.min_count)
    result["seconds"] = time.perf_counter() - start
    if coop_iters:
        names = ("langevin_mean_abs_change", "langevin_frac_improved", "f_start", "f_end")
        result["langevin"] = dict(zip(names, (chain / coop_iters).tolist()))
    result["samples"] = samples[:1000].tolist()
    return result


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


METRICS = ("modes", "high_quality", "reverse_kl")


def summarise(results: list[dict], datasets: list[str], arms: list[str]) -> dict:
    """Mean and std over seeds of every metric, per dataset and arm."""
    summary: dict = {}
    for ds in datasets:
        for arm in arms:
            rows = [r for r in results if r["dataset"] == ds and r["arm"] == arm]
            entry = {k: mean_std([r[k] for r in rows]) for k in METRICS}
            entry["at_switch"] = {k: mean_std([r["at_switch"][k] for r in rows]) for k in METRICS}
            if "langevin" in rows[0]:
                entry["langevin"] = {
                    k: mean_std([r["langevin"][k] for r in rows]) for k in rows[0]["langevin"]
                }
            summary[f"{ds}/{arm}"] = entry
    return summary


def pm(ms: tuple[float, float], fmt: str, scale: float = 1.0) -> str:
    return f"{scale * ms[0]:{fmt}} ± {scale * ms[1]:{fmt}}"


def markdown(
    summary: dict, datasets: list[str], arms: list[str], *, cfg: Config, seeds: list[int]
) -> str:
    lines = [
        f"Mode coverage, mean ± std over seeds {seeds}; {cfg.iters} iterations per arm; "
        f"CoopInit arms: {cfg.coop_iters} cooperative + {cfg.iters - cfg.coop_iters} adversarial.",
        f"Covered: >= {cfg.min_count} of {cfg.eval_samples} samples within 3 std of the centre; "
        "high quality: within 3 std of some centre; KL: reverse KL(gen || uniform) of the "
        f"nearest-centre histogram. 'At {cfg.coop_iters}': the same metrics at the switch point.",
        "",
        "| dataset | arm | modes covered | high quality % | reverse KL "
        f"| modes at {cfg.coop_iters} | KL at {cfg.coop_iters} |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for ds in datasets:
        n_modes = len(make_mixture(ds).centres)
        for arm in arms:
            e, sw = summary[f"{ds}/{arm}"], summary[f"{ds}/{arm}"]["at_switch"]
            lines.append(
                f"| {ds} ({n_modes}) | {arm} | {pm(e['modes'], '.1f')} | "
                f"{pm(e['high_quality'], '.1f', 100)} | {pm(e['reverse_kl'], '.3f')} | "
                f"{pm(sw['modes'], '.1f')} | {pm(sw['reverse_kl'], '.3f')} |"
            )
    coop_arm = next((arm for arm in arms if arm != "gan"), None)
    if coop_arm is None:
        return "\n".join(lines) + "\n"
    # The cooperative stage is identical in every CoopInit arm (same seeds), so report it once.
    noise_only = cfg.step_size * math.sqrt(2 * cfg.langevin_steps / math.pi) if cfg.noise else 0.0
    lines += [
        "",
        f"Cooperative stage (K={cfg.langevin_steps}, delta={cfg.step_size}, "
        f"s_ref={cfg.ref_scale} x data RMS radius, noise={'on' if cfg.noise else 'off'}, "
        f"alpha={cfg.energy_reg}): mean over its iterations, then mean ± std over seeds. "
        f"Noise alone would give a mean abs change of {noise_only:.3f}.",
        "",
        "| dataset | mean abs Langevin change | frac chains f improved | f(G(z)) | f(revised) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for ds in datasets:
        lv = summary[f"{ds}/{coop_arm}"]["langevin"]
        lines.append(
            f"| {ds} | {pm(lv['langevin_mean_abs_change'], '.3f')} | "
            f"{pm(lv['langevin_frac_improved'], '.3f')} | {pm(lv['f_start'], '.2f')} | "
            f"{pm(lv['f_end'], '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: list[dict], datasets: list[str], arms: list[str], *, seed: int, path: Path) -> None:
    """Real data, each arm's final samples and CoopInit's G at the switch, for one seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = {(r["dataset"], r["arm"]): r for r in results if r["seed"] == seed}
    coop_arm = next((arm for arm in arms if arm != "gan"), None)
    n_cols = len(arms) + 1 + (coop_arm is not None)
    fig, axes = plt.subplots(len(datasets), n_cols, figsize=(3 * n_cols, 3.2 * len(datasets)), squeeze=False)
    for row, ds in zip(axes, datasets):
        mix = make_mixture(ds)
        panels = [("real", mix.sample(1000, torch.Generator().manual_seed(seed)))]
        panels += [(f"{arm}, end", torch.tensor(by_key[ds, arm]["samples"])) for arm in arms]
        if coop_arm is not None:
            switch = torch.tensor(by_key[ds, coop_arm]["samples_at_switch"])
            panels.append(("CoopInit G at the switch", switch))
        lim = mix.centres.abs().max().item() + 1.0
        for ax, (title, pts) in zip(row, panels):
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4)
            ax.scatter(mix.centres[:, 0], mix.centres[:, 1], s=10, c="red", marker="x", linewidths=0.8)
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
            ax.set_title(f"{ds}: {title}", fontsize=9)
            ax.tick_params(labelsize=7)
    fig.suptitle(f"seed {seed}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1/5 of the iterations, first two seeds")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--datasets", nargs="+", default=["ring", "grid"], choices=["ring", "grid"])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--workers", type=int, default=2, help="processes, one thread each")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the .md/.json/.png")
    for field, default in asdict(Config()).items():
        flag = "--" + field.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            p.add_argument(flag, type=type(default), default=default)
    args = p.parse_args()
    cfg = Config(**{f: getattr(args, f) for f in asdict(Config())})
    if not 0 <= cfg.coop_iters < cfg.iters:
        p.error("need 0 <= --coop-iters < --iters")
    seeds = args.seeds
    if args.quick:
        cfg = replace(cfg, iters=cfg.iters // 5, coop_iters=cfg.coop_iters // 5)
        seeds = seeds[:2]

    jobs = [Job(ds, s, arm, cfg) for ds in args.datasets for s in seeds for arm in args.arms]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(run_arm, jobs))
    wall = time.perf_counter() - start

    summary = summarise(results, args.datasets, args.arms)
    cpu = sum(r["seconds"] for r in results)
    report = markdown(summary, args.datasets, args.arms, cfg=cfg, seeds=seeds)
    report += f"\nWall time {wall:.0f} s ({cpu:.0f} s summed over {len(jobs)} runs, {args.workers} processes).\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mode_coverage.md").write_text(report)
    plot(results, args.datasets, args.arms, seed=seeds[0], path=args.out / "mode_coverage.png")
    for r in results:
        r.pop("samples")
        r.pop("samples_at_switch")
    payload = {"config": asdict(cfg), "seeds": seeds, "wall_seconds": wall, "summary": summary, "runs": results}
    (args.out / "mode_coverage.json").write_text(json.dumps(payload, indent=1))


if __name__ == "__main__":
    main()
