"""Calibrate CoopInit's Langevin/EBM defaults on real photos (cat2dog, 64 px, small networks).

For each setting (K, delta, s_ref, noise, lambda_teach) this trains the real CUTModel through a
cooperative stage (stage 1) of ``--iters`` iterations from the same seed and data stream, and
measures every iteration, per chain (one chain = one image of the batch):

- change    mean |y_tilde - y_hat| over pixels (pixels in [-1, 1]);
- f-driven  mean |y_tilde(D) - y_tilde(f=0)|: the same chain, same start, same noise, rerun with a
            zero discriminator; what is left is what D's gradient did;
- shrink    (1 - r^K) mean |y_hat|, r = 1 - delta^2 / (2 s_ref^2): what the reference Gaussian
            alone does (exact: the f=0 chain is r^K y_hat + accumulated noise);
- noise     mean |y_tilde(f=0) - r^K y_hat|: the accumulated Langevin noise;
- climbs    fraction of chains with f(y_tilde) > f(y_hat), and the same for the f=0 chain as a
            control (shrink and noise alone also change f);
- f(data), f(proposal), f(revised), max |f|, mean |grad_y f| per pixel at y_hat, finiteness,
  EBM / teach / NCE losses, seconds per iteration of stage 1 vs plain CUT (stage 2) iterations.

The instrumentation (the f=0 chain, extra scores) is timed separately and excluded from s/it.
Only the training split is read (trainA/trainB); nothing is tuned on the test split.

Run: .venv/bin/python -m bench.calibrate_coop            (full grid, ~30 min on 2 busy cores)
     .venv/bin/python -m bench.calibrate_coop --quick    (~2 min smoke run, 2 settings)
Writes bench/results/calibration.{md,json} and bench/results/calibration_chain.png (chosen setting);
--quick writes under bench/runs/calibration/quick/ instead; --render rewrites the .md from the .json.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RUNS = ROOT / "bench" / "runs" / "calibration"  # git-ignored scratch (per-setting strips)
DATAROOT = "/work/shared/datasets/cat2dog"
# Small networks at 64 px so a grid fits a CPU budget (stated in the report).
NET_ARGS = ["--load_size", "72", "--crop_size", "64", "--ngf", "32", "--netG", "resnet_6blocks",
            "--ndf", "64", "--netD", "basic"]

# Selection criteria (see docs/coopinit.md, "Calibration"): measured over the last third of the stage,
# when D's scores have grown.
MIN_CLIMB = 0.6  # chain climbs f in most chains
MIN_DRIVEN = 0.02  # mean |y_tilde(D) - y_tilde(f=0)| >= 0.02 (~2.5 grey levels of 255)
MIN_DRIVEN_SHARE = 0.5  # f-driven part >= half of the change (not mostly shrink/jitter)
MAX_OVERHEAD = 4.0  # stage-1 s/it <= 4x plain CUT s/it (5 of 400 epochs: <= ~4% of a run)


@dataclass(frozen=True)
class Setting:
    name: str
    steps: int
    step_size: float
    ref_sigma: float
    noise: bool = True
    lambda_teach: float = 1.0

    @property
    def shrink_per_step(self) -> float:
        return 1.0 - self.step_size**2 / (2.0 * self.ref_sigma**2)

    @property
    def shrink_total(self) -> float:
        """r^K: the factor the reference term alone applies to y over the chain."""
        return self.shrink_per_step**self.steps

    @property
    def noise_std(self) -> float:
        """Std of the accumulated noise per pixel: delta * sqrt(sum_k r^(2k))."""
        if not self.noise:
            return 0.0
        r2 = self.shrink_per_step**2
        total = self.steps if abs(r2 - 1.0) < 1e-12 else (1 - r2**self.steps) / (1 - r2)
        return self.step_size * math.sqrt(max(total, 0.0))

    def flags(self) -> list[str]:
        return ["--coop_langevin_steps", str(self.steps), "--coop_step_size", str(self.step_size),
                "--coop_ref_sigma", str(self.ref_sigma), "--coop_noise", str(self.noise).lower(),
                "--lambda_teach", str(self.lambda_teach)]


# The grid. Before running anything, r = 1 - delta^2/(2 s_ref^2) per step (pixels in [-1, 1]):
#   delta 0.002, s_ref 0.016: r = 0.9922, r^15 = 0.889 (11% shrink), r^30 = 0.79; drift delta^2/2 = 2e-6
#   delta 0.01,  s_ref 0.016: r = 0.805,  r^15 = 0.04  -> wipes the image to grey: not run
#   delta 0.05,  s_ref 0.016: r = -3.88               -> diverges (|r| > 1): not run
#   delta 0.01,  s_ref 0.3:   r = 0.99944, r^15 = 0.992; drift 5e-5, noise std 0.039
#   delta 0.05,  s_ref 0.3:   r = 0.9861, r^15 = 0.81 (19% shrink); drift 1.25e-3, noise std 0.18
#   delta 0.05,  s_ref 1.0:   r = 0.99875, r^15 = 0.981; drift 1.25e-3, noise std 0.19
#   delta 0.1,   s_ref 10:    r = 0.99995, r^15 = 0.9993 (no reference in effect); drift 5e-3
#   delta 0.2,   s_ref 10:    r = 0.9998,  r^15 = 0.997; drift 0.02 (noise would be std 0.77: off)
#   delta 0.3,   s_ref 10:    r = 0.99955, r^15 = 0.993; drift 0.045
# D-driven movement ~ K * delta^2/2 * |grad_y f| per pixel; a smoke run measured |grad_y f| ~ 0.01-0.03
# per pixel early in the stage, so delta = 0.002 moves ~1e-6 whatever K (K=30 only doubles it).
GRID = [
    Setting("spec", 15, 0.002, 0.016),
    Setting("d0.05_s1", 15, 0.05, 1.0),
    Setting("d0.2_s10_nonoise", 15, 0.2, 10.0, noise=False),
    Setting("d0.3_s10_nonoise", 15, 0.3, 10.0, noise=False),
]
# Selectable with --settings, not in the default grid (see docs/coopinit.md, "Calibration", for why).
EXTRA = [
    Setting("spec_K30", 30, 0.002, 0.016),
    Setting("d0.01_s0.3", 15, 0.01, 0.3),
    Setting("d0.05_s0.3", 15, 0.05, 0.3),
    Setting("d0.05_s1_nonoise", 15, 0.05, 1.0, noise=False),
    Setting("d0.1_s10_nonoise", 15, 0.1, 10.0, noise=False),
    Setting("d0.2_s10", 15, 0.2, 10.0),
]
# After each stage, the final D is probed with these step sizes (s_ref 10: no reference in effect,
# same K, noise on and off) on 8 fixed training proposals: the D-driven part as a function of delta.
PROBE_DELTAS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5)
QUICK_GRID = [GRID[0], GRID[3]]
NOT_RUN = [
    ("d0.01_s0.016", 15, 0.01, 0.016, "r^15 = 0.04: the reference term alone wipes the image to grey"),
    ("d0.05_s0.016", 15, 0.05, 0.016, "r = -3.88: |r| > 1, the chain diverges"),
]


class ZeroD(nn.Module):
    """f == 0 with a (zero) gradient w.r.t. y: the chain without the discriminator."""

    def forward(self, y: Tensor) -> Tensor:
        return y.mul(0.0).flatten(1).sum(1)


def _options(setting: Setting, args: argparse.Namespace):
    from options.train_options import TrainOptions

    argv = ["--dataroot", args.dataroot, "--name", "calibration", "--checkpoints_dir", str(RUNS / "ckpt"),
            "--gpu_ids", "-1", "--seed", str(args.seed), "--batch_size", str(args.batch_size),
            "--num_threads", "0", "--display_id", "0", "--no_html", "--coop_epochs", "0",
            *NET_ARGS, *setting.flags()]
    # CUTModel.modify_commandline_options calls parser.parse_known_args() without argv, i.e. it
    # reads sys.argv; present it the same argv so this script's own flags are not misread.
    saved, sys.argv = sys.argv, [sys.argv[0], *argv]
    try:
        return TrainOptions().parse(argv)
    finally:
        sys.argv = saved


def _mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else float("nan")


def run_setting(setting: Setting, args: argparse.Namespace) -> dict:
    """Train one cooperative stage with ``setting``; return per-iteration records and summaries."""
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from data import create_dataset
    from data.sampler import EpochSampler
    from models import coop, create_model
    from models.coop import NonFiniteError
    from models.schedule import StageSchedule

    torch.manual_seed(args.seed)
    opt = _options(setting, args)
    device = torch.device("cpu")
    dataset = create_dataset(opt)
    sampler = EpochSampler(len(dataset), batch_size=opt.batch_size, seed=opt.seed, shuffle=True)
    model = create_model(opt, device)
    model.data_dependent_initialize(default_collate([dataset[(1, 0)]]))
    model.schedule = StageSchedule(coop_iters=args.iters)
    zero_d = ZeroD()
    rK = setting.shrink_total

    records: list[dict] = []
    cur: dict = {}

    def instrumented_revise() -> Tensor:
        """model.revise with a seeded noise stream, plus the f=0 rerun and per-chain scores."""
        chain_seed = args.seed * 1_000_003 + len(records)
        start = model.fake_B
        t0 = time.perf_counter()
        revised, stats = coop.langevin_revise(
            model.netD, start, steps=opt.coop_langevin_steps, step_size=opt.coop_step_size,
            ref_sigma=opt.coop_ref_sigma, noise=opt.coop_noise,
            generator=torch.Generator().manual_seed(chain_seed))
        cur["chain_s"] = time.perf_counter() - t0
        model.losses.update(f_proposal=stats.score_start, langevin_change=stats.mean_abs_change,
                            langevin_improved=stats.frac_improved)
        t1 = time.perf_counter()
        y0 = start.detach()
        free, _ = coop.langevin_revise(zero_d, y0, steps=opt.coop_langevin_steps, step_size=opt.coop_step_size,
                                       ref_sigma=opt.coop_ref_sigma, noise=opt.coop_noise,
                                       generator=torch.Generator().manual_seed(chain_seed))
        y = y0.clone().requires_grad_(True)
        with torch.enable_grad():
            f_hat = coop.patch_score(model.netD, y)
            (grad,) = torch.autograd.grad(f_hat.sum(), y)
        with torch.no_grad():
            f_rev = coop.patch_score(model.netD, revised)
            f_free = coop.patch_score(model.netD, free)
            per = lambda t: t.abs().flatten(1).mean(1)  # noqa: E731  per-chain mean over pixels
            cur.update(
                change=per(revised - y0).tolist(),
                driven=per(revised - free).tolist(),
                shrink=((1.0 - rK) * per(y0)).tolist(),
                noise=per(free - rK * y0).tolist(),
                climbs=(f_rev > f_hat.detach()).float().tolist(),
                climbs_f0=(f_free > f_hat.detach()).float().tolist(),
                f_hat=f_hat.detach().tolist(), f_rev=f_rev.tolist(),
                grad_abs=per(grad).tolist())
        cur["instr_s"] = time.perf_counter() - t1
        return revised

    model.revise = instrumented_revise
    error = None
    it, epoch = 0, 1
    batches = iter(())
    total_iters = args.iters + args.baseline_iters
    while it < total_iters:
        batch_keys = next(batches, None)
        if batch_keys is None:
            sampler.start(epoch)
            keys = list(sampler)
            batches = iter([keys[i:i + opt.batch_size] for i in range(0, len(keys), opt.batch_size)])
            epoch += 1
            continue
        batch = default_collate([dataset[k] for k in batch_keys])
        model.set_input(batch)
        cur = {"iteration": it + 1}
        t0 = time.perf_counter()
        try:
            stage = model.optimize(it)
        except (NonFiniteError, ValueError, RuntimeError) as err:
            error = f"iteration {it + 1}: {err}"
            break
        elapsed = time.perf_counter() - t0
        cur["stage"] = stage
        cur["sec"] = elapsed - cur.get("instr_s", 0.0)
        losses = model.current_losses()
        cur.update({k: losses[k] for k in ("EBM", "teach", "f_data", "f_revised", "NCE", "NCE_Y") if k in losses})
        if stage == "coop":
            f_all = [abs(v) for v in (*cur["f_hat"], *cur["f_rev"], cur["f_data"])]
            cur["max_abs_f"] = max(f_all)
            if not all(math.isfinite(v) for v in f_all):
                error = f"iteration {it + 1}: non-finite score"
        records.append(cur)
        if error:
            break
        it += 1
        if args.verbose and it % 25 == 0:
            c = records[-1]
            print(f"[{setting.name}] it {it} {stage} sec {c['sec']:.3f} "
                  + (f"change {_mean(c['change']):.4f} driven {_mean(c['driven']):.4f} "
                     f"f_data {c['f_data']:.3g} f_rev {c['f_revised']:.3g} grad {_mean(c['grad_abs']):.3g}"
                     if stage == "coop" else ""), flush=True)

    strip, probe = None, []
    if error is None:
        scratch = scratch_dir(args)
        torch.save({"G": model.netG.state_dict(), "D": model.netD.state_dict()}, scratch / f"{setting.name}_nets.pth")
        strip = str(save_strip(model, dataset, setting, opt, args, coop, zero_d))
        try:
            probe = probe_deltas(model, dataset, opt, args, coop, zero_d)
        except Exception as err:  # noqa: BLE001  the probe is supplementary; keep the stage's results
            probe = [{"delta": None, "noise": None, "error": f"probe failed: {err!r}"}]
    return {"setting": asdict(setting), "records": records, "error": error, "strip": strip, "probe": probe,
            "summary": summarise(setting, records, error, args)}


def probe_deltas(model, dataset, opt, args, coop, zero_d) -> list[dict]:
    """The final D, K steps from 8 fixed training proposals, s_ref 10, for each delta in PROBE_DELTAS."""
    n = 2 if args.quick else 8
    x = torch.stack([dataset[(0, i)]["A"] for i in range(n)])
    with torch.no_grad():
        y0 = model.netG(x)
        f0 = coop.patch_score(model.netD, y0)
    out = []
    for delta in PROBE_DELTAS:
        for noise in (True, False):
            kw = dict(steps=opt.coop_langevin_steps, step_size=delta, ref_sigma=10.0, noise=noise)
            try:
                rev, _ = coop.langevin_revise(model.netD, y0, generator=torch.Generator().manual_seed(7), **kw)
            except coop.NonFiniteError as err:
                out.append({"delta": delta, "noise": noise, "error": str(err)})
                continue
            free, _ = coop.langevin_revise(zero_d, y0, generator=torch.Generator().manual_seed(7), **kw)
            with torch.no_grad():
                f1 = coop.patch_score(model.netD, rev)
            out.append({"delta": delta, "noise": noise, "change": (rev - y0).abs().mean().item(),
                        "driven": (rev - free).abs().mean().item(),
                        "climbs": (f1 > f0).float().mean().item(), "f_gain": (f1 - f0).mean().item(),
                        "f_proposal": f0.mean().item(), "max_abs_f": f1.abs().max().item()})
    return out


def scratch_dir(args: argparse.Namespace) -> Path:
    """Per-setting strips and final networks (git-ignored); the smoke run keeps its own."""
    path = RUNS / ("quick" if args.quick else "full")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_strip(model, dataset, setting: Setting, opt, args, coop, zero_d) -> Path:
    """4 training images: source | proposal G(x) | revised | |revised - proposal| x5 | f-driven x5."""
    from PIL import Image

    from util.image import to_uint8

    items = [dataset[(0, i)] for i in range(4)]  # fixed training images (epoch key 0: not used in training)
    x = torch.stack([item["A"] for item in items])
    with torch.no_grad():
        y0 = model.netG(x)
    kw = dict(steps=opt.coop_langevin_steps, step_size=opt.coop_step_size, ref_sigma=opt.coop_ref_sigma,
              noise=opt.coop_noise)
    revised, _ = coop.langevin_revise(model.netD, y0, generator=torch.Generator().manual_seed(123), **kw)
    free, _ = coop.langevin_revise(zero_d, y0, generator=torch.Generator().manual_seed(123), **kw)
    diff = ((revised - y0).abs() * 5).clamp(0, 2) - 1  # |diff| x5, 0 = black
    driven = ((revised - free).abs() * 5).clamp(0, 2) - 1
    cols = [x, y0, revised, diff, driven]
    rows = [np.concatenate([to_uint8(c[i:i + 1])[0] for c in cols], axis=1) for i in range(4)]
    path = scratch_dir(args) / f"chain_{setting.name}.png"
    Image.fromarray(np.concatenate(rows, axis=0)).resize((5 * 64 * 2, 4 * 64 * 2), Image.NEAREST).save(path)
    return path


def summarise(setting: Setting, records: list[dict], error: str | None, args: argparse.Namespace) -> dict:
    coop_recs = [r for r in records if r["stage"] == "coop" and "change" in r]
    base = [r for r in records if r["stage"] != "coop"]
    n = len(coop_recs)
    thirds = {"first": coop_recs[: max(n // 3, 1)], "last": coop_recs[-max(n // 3, 1):], "all": coop_recs}

    def chain_mean(recs, key):
        return _mean([v for r in recs for v in r[key]])

    def scalar_mean(recs, key):
        return _mean([r[key] for r in recs if key in r])

    out: dict = {"iterations": n, "error": error,
                 "finite": error is None and all(math.isfinite(r.get("max_abs_f", 0.0)) for r in coop_recs),
                 "max_abs_f": max((r["max_abs_f"] for r in coop_recs), default=float("nan")),
                 "shrink_total": setting.shrink_total, "noise_std": setting.noise_std}
    for part, recs in thirds.items():
        if not recs:
            continue
        s = {k: chain_mean(recs, k) for k in ("change", "driven", "shrink", "noise", "climbs", "climbs_f0",
                                              "f_hat", "f_rev", "grad_abs")}
        s.update({k: scalar_mean(recs, k) for k in ("f_data", "EBM", "teach", "NCE", "NCE_Y")})
        s["driven_share"] = s["driven"] / s["change"] if s["change"] > 0 else float("nan")
        out[part] = s
    # Timing: skip the first few iterations (allocator warm-up) of each stage.
    sec_coop = _mean([r["sec"] for r in coop_recs[5:]] or [r["sec"] for r in coop_recs])
    sec_base = _mean([r["sec"] for r in base[3:]] or [r["sec"] for r in base])
    out.update(sec_coop=sec_coop, sec_base=sec_base, overhead=sec_coop / sec_base if base else float("nan"),
               chain_sec=_mean([r["chain_s"] for r in coop_recs[5:]]))
    last = out.get("last", {})
    checks = {
        "climbs": last.get("climbs", 0) >= MIN_CLIMB,
        "moves": last.get("driven", 0) >= MIN_DRIVEN,
        "d_driven": last.get("driven_share", 0) >= MIN_DRIVEN_SHARE,
        "finite": out["finite"] and n >= args.iters,
        "overhead": not base or out["overhead"] <= MAX_OVERHEAD,
    }
    out["checks"] = checks
    out["passes"] = all(checks.values())
    return out


def choose(results: list[dict]) -> dict:
    """Most checks passed, then fewest steps (cost), then the largest D-driven movement."""
    passing = [r for r in results if r["summary"]["passes"]]
    pool = passing or [r for r in results if r["summary"]["finite"]] or results

    def key(r):
        s = r["summary"]
        return (-sum(s["checks"].values()), r["setting"]["steps"], -s.get("last", {}).get("driven", 0))

    return min(pool, key=key)


def fmt(v, spec=".3g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec)


def markdown(results: list[dict], chosen: dict, args: argparse.Namespace, wall: float) -> str:
    lines = [
        "# CoopInit calibration (cat2dog, stage 1 only)", "",
        f"Command: `.venv/bin/python -m bench.calibrate_coop{' --quick' if args.quick else ''}"
        f" --iters {args.iters} --batch_size {args.batch_size}`  ",
        f"Data: {args.dataroot} trainA/trainB only, `{' '.join(NET_ARGS)}`, batch {args.batch_size}, "
        f"seed {args.seed}, lr 2e-4, CUT mode (NCE + NCE_Y), lambda_NCE 1. "
        f"Stage 1 = {args.iters} iterations per setting, then {args.baseline_iters} plain CUT iterations "
        f"for the timing baseline. CPU, {args.threads} thread(s) per setting, {args.jobs} setting(s) in parallel "
        f"on a shared 2-core machine; wall {wall / 60:.1f} min.", "",
        "Per-chain means of pixels in [-1, 1]. *first* / *last* = first / last third of the stage. "
        "change = |y_tilde - y_hat|; D-driven = |y_tilde(D) - y_tilde(f=0)| (same start, same noise, "
        "zero discriminator); shrink = (1 - r^K) |y_hat| with r = 1 - delta^2/(2 s_ref^2); noise = "
        "|y_tilde(f=0) - r^K y_hat|; climbs = fraction of chains with f(y_tilde) > f(y_hat) "
        "(f=0 control: the same for the chain without D); |grad f| = mean |d f / d y| per pixel at y_hat.", "",
        "| setting | K | delta | s_ref | noise | r^K | change first/last | D-driven first/last | shrink | "
        "noise | D-driven share (last) | climbs (last) | climbs f=0 (last) | |grad f| first/last | "
        "f(data) last | f(proposal) last | f(revised) last | max abs f | finite | teach first/last | "
        "NCE first/last | s/it coop | s/it CUT | overhead | passes |",
        "|" + " --- |" * 24,
    ]
    for r in results:
        st, s = r["setting"], r["summary"]
        fi, la = s.get("first", {}), s.get("last", {})
        mark = " (chosen)" if r is chosen else ""
        lines.append(
            f"| {st['name']}{mark} | {st['steps']} | {st['step_size']} | {st['ref_sigma']} | "
            f"{'on' if st['noise'] else 'off'} | {s['shrink_total']:.3f} | "
            f"{fmt(fi.get('change'))} / {fmt(la.get('change'))} | {fmt(fi.get('driven'))} / {fmt(la.get('driven'))} | "
            f"{fmt(la.get('shrink'))} | {fmt(la.get('noise'))} | {fmt(la.get('driven_share'), '.2f')} | "
            f"{fmt(la.get('climbs'), '.2f')} | {fmt(la.get('climbs_f0'), '.2f')} | "
            f"{fmt(fi.get('grad_abs'))} / {fmt(la.get('grad_abs'))} | "
            f"{fmt(la.get('f_data'))} | {fmt(la.get('f_hat'))} | {fmt(la.get('f_rev'))} | "
            f"{fmt(s['max_abs_f'])} | {'yes' if s['finite'] else 'NO: ' + str(s['error'])} | "
            f"{fmt(fi.get('teach'))} / {fmt(la.get('teach'))} | {fmt(fi.get('NCE'))} / {fmt(la.get('NCE'))} | "
            f"{fmt(s['sec_coop'], '.3f')} | {fmt(s['sec_base'], '.3f')} | {fmt(s['overhead'], '.2f')}x | "
            f"{'yes' if s['passes'] else 'no (' + ', '.join(k for k, v in s['checks'].items() if not v) + ')'} |")
    lines += ["", "Not run (computed from r alone):", ""]
    for name, k, d, sref, why in NOT_RUN:
        lines.append(f"- {name} (K {k}, delta {d}, s_ref {sref}): {why}.")
    lines += ["", "Probe of each setting's final D (8 fixed training proposals, same K, s_ref 10 so no "
              "reference shrink; D-driven = |y_tilde(D) - y_tilde(f=0)|, same noise; climbs = fraction with "
              "f(y_tilde) > f(y_hat); gain = mean f(y_tilde) - f(y_hat)):", "",
              "| trained with | noise | " + " | ".join(f"delta {d}" for d in PROBE_DELTAS) + " |",
              "|" + " --- |" * (len(PROBE_DELTAS) + 2)]
    for r in results:
        for noise in (True, False):
            cells = []
            for d in PROBE_DELTAS:
                p = next((p for p in r.get("probe", []) if p["delta"] == d and p["noise"] == noise), None)
                if p is None:
                    cells.append("-")
                elif "error" in p:
                    cells.append(p["error"])
                else:
                    cells.append(f"change {p['change']:.3g}, D-driven {p['driven']:.3g}, climbs {p['climbs']:.2f}, "
                                 f"gain {p['f_gain']:.3g}")
            lines.append(f"| {r['setting']['name']} | {'on' if noise else 'off'} | " + " | ".join(cells) + " |")
    cs = chosen["setting"]
    lines += [
        "", f"Criteria (last third of the stage): climbs >= {MIN_CLIMB}, D-driven >= {MIN_DRIVEN}, "
        f"D-driven share >= {MIN_DRIVEN_SHARE}, finite over the stage, overhead <= {MAX_OVERHEAD}x. "
        f"Chosen: **{cs['name']}** (K {cs['steps']}, delta {cs['step_size']}, s_ref {cs['ref_sigma']}, "
        f"noise {'on' if cs['noise'] else 'off'}, lambda_teach {cs['lambda_teach']})"
        + ("" if chosen["summary"]["passes"] else " -- no setting passed every check; this is the best effort")
        + ".", "",
        "Strip (bench/results/calibration_chain.png, chosen setting, end of stage, 4 training images): "
        "source x | proposal G(x) | revised | |revised - proposal| x5 | |revised - revised(f=0)| x5.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 settings, few iterations")
    parser.add_argument("--iters", type=int, default=None, help="stage-1 iterations per setting (default 120)")
    parser.add_argument("--baseline_iters", type=int, default=None, help="plain CUT iterations for timing")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--settings", default=None, help="comma-separated names from the grid (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="settings run in parallel")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per setting (1: on a busy machine 2 threads ran 10x slower)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataroot", default=DATAROOT)
    parser.add_argument("--out", default=None,
                        help="output prefix (.md, .json); default bench/results/calibration, "
                             "or bench/runs/calibration/quick with --quick (the smoke run never overwrites results)")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--render", action="store_true",
                        help="rewrite the .md (and the chosen strip) from the existing .json without running")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = str(RUNS / "quick" / "calibration" if args.quick else RESULTS / "calibration")
    out = Path(args.out)
    if args.render:
        payload = json.loads(out.with_suffix(".json").read_text())
        results = payload["results"]
        chosen = choose(results)
        payload["chosen"] = chosen["setting"]["name"]
        out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str))
        md = markdown(results, chosen, argparse.Namespace(**payload["args"]), payload["wall_s"])
        out.with_suffix(".md").write_text(md)
        if chosen["strip"] and Path(chosen["strip"]).exists():
            shutil.copyfile(chosen["strip"], out.parent / f"{out.name}_chain.png")
        print(md)
        return 0
    if args.iters is None:
        args.iters = 20 if args.quick else 120
    if args.baseline_iters is None:
        args.baseline_iters = 5 if args.quick else 10
    grid = QUICK_GRID if args.quick else GRID
    if args.settings:
        names = args.settings.split(",")
        grid = [s for s in GRID + EXTRA if s.name in names]

    start = time.perf_counter()
    if args.jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
            results = list(pool.map(run_setting, grid, [args] * len(grid)))
    else:
        results = [run_setting(s, args) for s in grid]
    wall = time.perf_counter() - start
    chosen = choose(results)

    out.parent.mkdir(parents=True, exist_ok=True)
    md = markdown(results, chosen, args, wall)
    out.with_suffix(".md").write_text(md)
    payload = {"args": vars(args), "net_args": NET_ARGS, "wall_s": wall, "chosen": chosen["setting"]["name"],
               "criteria": {"min_climb": MIN_CLIMB, "min_driven": MIN_DRIVEN, "min_driven_share": MIN_DRIVEN_SHARE,
                            "max_overhead": MAX_OVERHEAD},
               "results": [{k: v for k, v in r.items() if k != "records"} | {"per_iteration": compact(r["records"])}
                           for r in results]}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str))
    if chosen["strip"]:
        shutil.copyfile(chosen["strip"], out.parent / f"{out.name}_chain.png")
    print(md)
    return 0


def compact(records: list[dict]) -> dict:
    """Per-iteration series (chain means), rounded, for plotting the dynamics."""
    keys = ("change", "driven", "climbs", "climbs_f0", "f_hat", "f_rev", "grad_abs")
    series: dict = {k: [] for k in ("iteration", "stage", "sec", "f_data", "EBM", "teach", "NCE", *keys)}
    for r in records:
        for k in series:
            v = r.get(k)
            if isinstance(v, list):
                v = _mean(v)
            series[k].append(round(v, 6) if isinstance(v, float) and math.isfinite(v) else v)
    return series


if __name__ == "__main__":
    raise SystemExit(main())
