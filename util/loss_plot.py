"""Loss curves from the run log (``checkpoints/NAME/loss_log.jsonl``) drawn to a PNG.

One panel per CoopInit stage (stage-1 and stage-2 losses mean different things), the
cooperative stage shaded and the switch to the adversarial stage marked on every panel.

    python -m util.loss_plot checkpoints/NAME/loss_log.jsonl loss.png
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from matplotlib.figure import Figure

from util.run_log import read_jsonl

STAGE_TITLES = {
    "coop": "stage 1: cooperative (EBM)",
    "blend": "stage 1 -> 2: blend",
    "adversarial": "stage 2: adversarial",
    "eval": "evaluation: FID / KID on the test split",
}
_STAGE_SHADES = {"coop": "#dbe9f6", "blend": "#fbe5c8"}


def stage_title(stage: str) -> str:
    return STAGE_TITLES.get(stage, f"stage: {stage}")


def add_record(records: list[dict], record: dict) -> None:
    """Append a log record; a resumed run re-logs iterations after its checkpoint, so
    records past ``record["iter"]`` (or at it, of the same stage) are superseded rather than
    duplicated; an evaluation may share its iteration with a loss record."""
    while records and (records[-1]["iter"] > record["iter"]
                       or records[-1]["iter"] == record["iter"] and records[-1]["stage"] == record["stage"]):
        records.pop()
    records.append(record)


def read_loss_log(path: str | Path) -> list[dict]:
    """Records of a jsonl run log in iteration order; [] when it does not exist.

    Unparsable lines are skipped (read_jsonl): the writer may be mid-line while training runs.
    """
    records: list[dict] = []
    for record in read_jsonl(path):
        if isinstance(record, dict) and {"iter", "stage", "losses"} <= record.keys():
            add_record(records, record)
    return records


def stage_segments(records: list[dict]) -> list[tuple[str, int, int]]:
    """Contiguous runs of one stage as (stage, start, last iter); the start is the stage's first
    iteration where the record says it (`stage_start`), else its first logged iteration."""
    segments: list[tuple[str, int, int]] = []
    for r in records:
        if segments and segments[-1][0] == r["stage"]:
            segments[-1] = (r["stage"], segments[-1][1], r["iter"])
        else:
            segments.append((r["stage"], r.get("stage_start", r["iter"]), r["iter"]))
    return segments


def plot_records(records: list[dict], png_path: str | Path, *, title: str = "") -> None:
    """Draw ``records`` (non-empty) to ``png_path``, replacing it atomically."""
    _save_atomically(loss_figure(records, title=title), Path(png_path))


def loss_figure(records: list[dict], *, title: str = "") -> Figure:
    """One panel of loss curves per stage, switches marked, from non-empty ``records``."""
    stages = list(dict.fromkeys(r["stage"] for r in records))
    segments = stage_segments(records)
    fig = Figure(figsize=(10, 0.6 + 2.6 * len(stages)), dpi=100, layout="constrained")
    axes = fig.subplots(len(stages), 1, sharex=True, squeeze=False)[:, 0]
    for ax, stage in zip(axes, stages):
        for i, (seg_stage, start, end) in enumerate(segments):
            if seg_stage in _STAGE_SHADES:
                # Extend each shaded run to where the next one starts, so no gap shows.
                stop = segments[i + 1][1] if i + 1 < len(segments) else end
                ax.axvspan(start, stop, color=_STAGE_SHADES[seg_stage], zorder=0)
            if i > 0:
                ax.axvline(start, color="#c0392b", linestyle="--", linewidth=1.2)
        stage_records = [r for r in records if r["stage"] == stage]
        names = list(dict.fromkeys(k for r in stage_records for k in r["losses"]))
        for name in names:
            points = [(r["iter"], r["losses"][name]) for r in stage_records if name in r["losses"]]
            # a marker where a curve is one logged point (a short stage), which a line alone would not show
            ax.plot(*zip(*points), label=name, linewidth=1.2, marker="o" if len(points) == 1 else None)
        ax.set_title(stage_title(stage), fontsize=10, loc="left")
        ax.set_ylabel("loss")
        if stage == "coop":  # energies in the hundreds beside the teaching loss and Langevin change near 0.01
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_ylabel("loss (symlog)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    for i, (stage, start, _) in enumerate(segments[1:]):
        # Staggered so that close switches (coop -> blend -> adversarial) stay readable.
        axes[0].annotate(f"-> {stage} @ {start}", (start, 1.0), xycoords=("data", "axes fraction"),
                         xytext=(3, -12 * (i % 3 + 1)), textcoords="offset points",
                         color="#c0392b", fontsize=8)
    axes[-1].set_xlabel("iteration")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def plot_loss_log(log_path: str | Path, png_path: str | Path, *, title: str = "") -> bool:
    """Render the run log to a PNG; False (nothing written) when it has no records."""
    records = read_loss_log(log_path)
    if records:
        plot_records(records, png_path, title=title)
    return bool(records)


def _save_atomically(fig: Figure, path: Path) -> None:
    # The training page may be open in a browser while we write; never show half a PNG.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", help="loss_log.jsonl of a run")
    parser.add_argument("png", help="output PNG")
    args = parser.parse_args()
    if not plot_loss_log(args.log, args.png, title=Path(args.log).parent.name):
        raise SystemExit(f"no loss records in {args.log}")


if __name__ == "__main__":
    main()
