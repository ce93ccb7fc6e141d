"""Live training view: visdom panes (images, loss curves per CoopInit stage) and an HTML page.

Visdom is optional: when it is missing, down or restarted the Visualizer warns once and
training goes on; plotting resumes when the server answers again, re-sending the whole
loss history so the curves stay complete.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from util.html import HTML
from util.image import save_png, to_uint8
from util.loss_plot import add_record, plot_loss_log, read_loss_log, stage_title
from util.run_log import EVAL_LOG, read_jsonl

log = logging.getLogger(__name__)

# (connect, read) seconds: a dead or hung server must never stall the training loop.
_HTTP_TIMEOUT = (1.0, 3.0)
_LOSS_LOG = "loss_log.jsonl"
_ROWS_INDEX = "rows.json"
_LOSS_PNG = "loss_curve.png"
_HTML_REFRESH_S = 30
# Markers, so a stage logged once (a short cooperative stage) shows its point: a line needs two.
_LOSS_PANE = dict(width=640, height=400, markers=True, markersize=4)
# The training page's columns, left to right (other visuals follow in the model's order), and
# their captions; file names and visdom keep the model's (CUT's) names.
_CAPTIONS = {
    "real_A": "input x (real A)",
    "fake_B": "G(x)",
    "revised_B": "Langevin-revised G(x): G's target in stage 1",
    "real_B": "real B",
    "idt_B": "identity: G(real B)",
}


def page_caption(label: str, stage: str) -> str:
    """Caption of a visual on the training page; in stage 1, G(x) is the EBM's proposal."""
    caption = _CAPTIONS.get(label, label)
    if label == "fake_B":
        caption += ", proposal" if stage != "adversarial" else ", translation"
    return caption


def tensor_to_image(t: Tensor) -> np.ndarray:
    """First image of an (N,C,H,W) batch in [-1, 1] as HxWx3 uint8 (grey made RGB)."""
    image = to_uint8(t[:1])[0]
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def _make_client(*, server: str, port: int, env: str) -> Any:
    import requests
    import visdom

    class _Client(visdom.Visdom):
        """visdom's client with bounded HTTP timeouts (it has none)."""

        def __init__(self, **kwargs: Any) -> None:
            self._http = requests.Session()
            super().__init__(**kwargs)

        def _handle_post(self, url: str, data: Any = None) -> str:
            response = self._http.post(url, data=data or {}, timeout=_HTTP_TIMEOUT)
            # An HTTP error (e.g. another server on the port: 404, 501) fails like a refused connection:
            # visdom's _send turns requests' errors into ConnectionError.
            response.raise_for_status()
            return response.text

        def pane_exists(self, win: str) -> bool:
            # win_exists() swallows connection errors (printing them); this raises them.
            return self._send({"win": win, "eid": self.env}, endpoint="win_exists") == "true"

    # send=False: the constructor would otherwise contact the server (raising when it is
    # down) and log a warning on every construction; one client serves every reconnect.
    client = _Client(server=server, port=port, env=env, send=False,
                     raise_exceptions=True, use_incoming_socket=False)
    client.send = True
    return client


class Visualizer:
    """Shows training progress in visdom and in ``checkpoints/NAME/web/index.html``."""

    def __init__(self, opt: Any, *, enabled: bool = True, retry_seconds: float = 5.0) -> None:
        self.enabled = enabled  # False on non-zero DDP ranks: do nothing at all
        self.name = opt.name
        self.run_dir = Path(opt.checkpoints_dir) / opt.name
        self.web_dir = self.run_dir / "web"
        self.use_html = enabled and not opt.no_html
        self.winsize = opt.display_winsize
        self.ncols = opt.display_ncols
        self.display_id = opt.display_id
        self.server_hint = (f"{opt.display_server}:{opt.display_port} (start it with: "
                            f"{shlex.quote(sys.executable)} -m visdom.server -port {opt.display_port} -bind_local)")
        self.retry_seconds = retry_seconds
        self._vis: Any = None
        self._warned = False
        self._down_since: float | None = None  # monotonic time of the last failure
        self._synced: set[str] = set()  # loss panes whose full history the server holds
        self._records: list[dict] = []
        if not (enabled and opt.display_id > 0):
            return
        try:
            self._vis = _make_client(server=opt.display_server, port=opt.display_port,
                                     env=opt.display_env)
        except ImportError:
            self._warn("visdom is not installed; training continues without the live view.")
            return
        self._records = read_loss_log(self.run_dir / _LOSS_LOG)

    # ----- visdom -----

    def display_current_results(self, visuals: dict[str, Tensor], *, epoch: int,
                                total_iters: int, stage: str) -> None:
        """Show the first image of each visual (e.g. real_A, fake_B, revised_B) in visdom."""
        if not self._may_send():
            return
        labels = list(visuals)
        images = [tensor_to_image(visuals[k]) for k in labels]
        title = f"{self.name}: epoch {epoch}, iter {total_iters}, {stage_title(stage)}"
        if self.ncols > 0:
            grid = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
            ncols = min(self.ncols, len(images))
            nrows = math.ceil(len(images) / ncols)
            opts = dict(title=title, caption=" | ".join(labels),
                        width=ncols * self.winsize, height=nrows * self.winsize + 60)
            self._call(self._vis.images, grid, nrow=ncols, padding=2,
                       win=self._win("images"), opts=opts)
        else:
            for label, image in zip(labels, images):
                opts = dict(title=f"{label} ({title})", width=self.winsize, height=self.winsize)
                self._call(self._vis.image, image.transpose(2, 0, 1),
                           win=self._win(f"image_{label}"), opts=opts)

    def plot_current_losses(self, *, epoch: int, total_iters: int, losses: dict[str, float],
                            stage: str) -> None:
        """Record the losses and plot them in the pane of their stage."""
        if not self.enabled or self._vis is None:
            return
        record = {"epoch": epoch, "iter": total_iters, "stage": stage, "losses": dict(losses)}
        if self._records and self._records[-1]["iter"] >= total_iters:
            self._synced.clear()  # a resumed run rewinds: its panes must be redrawn
        previous_names = self._stage_names(stage)
        add_record(self._records, record)
        if not self._may_send():
            return
        win = self._win(f"loss_{stage}")
        if (win in self._synced and list(losses) == previous_names
                and self._call(self._vis.pane_exists, win)):
            self._call(self._vis.line, X=np.array([[float(total_iters)] * len(losses)]),
                       Y=np.array([list(losses.values())], dtype=float), win=win,
                       update="append", opts=dict(legend=list(losses)))
        else:
            self._send_all_loss_panes()

    def plot_metrics(self, *, epoch: int, total_iters: int, metrics: dict[str, float]) -> None:
        """Evaluation scores (FID, KID) over training, in a pane of their own."""
        self.plot_current_losses(epoch=epoch, total_iters=total_iters, losses=metrics, stage="eval")

    def _send_all_loss_panes(self) -> None:
        self._synced.clear()
        for stage in dict.fromkeys(r["stage"] for r in self._records):
            records = [r for r in self._records if r["stage"] == stage]
            names = self._stage_names(stage)
            x = np.array([float(r["iter"]) for r in records])
            y = np.array([[r["losses"].get(n, math.nan) for n in names] for r in records])
            win = self._win(f"loss_{stage}")
            opts = dict(title=f"{self.name} loss, {stage_title(stage)}, from iter {records[0]['iter']}",
                        legend=names, xlabel="iteration", ylabel="loss", **_LOSS_PANE)
            if not self._call(self._vis.line, X=x, Y=y, win=win, opts=opts):
                return
            self._synced.add(win)

    def _stage_names(self, stage: str) -> list[str]:
        return list(dict.fromkeys(k for r in self._records if r["stage"] == stage
                                  for k in r["losses"]))

    def _win(self, what: str) -> str:
        # display_id keeps the windows of runs sharing one server apart, as in CUT.
        return f"{self.display_id}_{self.name}_{what}"

    def _may_send(self) -> bool:
        """False while disabled, or while the server is down and a retry is not yet due."""
        if not self.enabled or self._vis is None:
            return False
        return self._down_since is None or time.monotonic() - self._down_since >= self.retry_seconds

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call the visdom client; on a connection failure note it and return None."""
        try:
            result = fn(*args, **kwargs)
        except ConnectionError:
            self._down_since = time.monotonic()
            self._synced.clear()  # the server may come back empty: re-send the history then
            self._warn(f"no visdom server answers at {self.server_hint}; "
                       "training continues without the live view.")
            return None
        if self._down_since is not None:
            log.info("visdom server is back; the loss history is re-sent with the next losses")
            self._down_since = None
        return result

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(message)

    # ----- HTML page -----

    def save_html(self, visuals: dict[str, Tensor], *, epoch: int, total_iters: int,
                  stage: str) -> None:
        """Add a row of images (newest first) to the run's page, under its loss curves."""
        if not self.use_html:
            return
        img_dir = self.web_dir / "images"
        img_dir.mkdir(parents=True, exist_ok=True)
        images = []
        rank = {label: i for i, label in enumerate(_CAPTIONS)}
        for label, tensor in sorted(visuals.items(), key=lambda item: rank.get(item[0], len(rank))):
            file = f"epoch{epoch:03d}_iter{total_iters:08d}_{label}.png"
            save_png(tensor_to_image(tensor), img_dir / file)
            images.append({"label": label, "file": f"images/{file}"})
        rows = self._read_rows()
        rows = [r for r in rows if r["iter"] < total_iters]  # a resumed run replaces later rows
        rows.append({"epoch": epoch, "iter": total_iters, "stage": stage, "images": images})
        _write_json_atomically(self.web_dir / _ROWS_INDEX, rows)
        has_curve = plot_loss_log(self.run_dir / _LOSS_LOG, img_dir / _LOSS_PNG,
                                  title=f"{self.name} losses")
        self._write_page(rows, curve_version=total_iters if has_curve else None)

    def _read_rows(self) -> list[dict]:
        try:
            return json.loads((self.web_dir / _ROWS_INDEX).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []

    def _write_page(self, rows: list[dict], *, curve_version: int | None) -> None:
        page = HTML(self.web_dir, f"Experiment name = {self.name}", refresh=_HTML_REFRESH_S)
        if curve_version is not None:
            # The query string defeats the browser cache, so a refresh shows the new curve.
            src = f"images/{_LOSS_PNG}?v={curve_version}"
            page.add_header("loss curves (shaded: cooperative stage; dashed: stage switch)")
            page.add_images([src], ["losses"], [src], width=4 * self.winsize)
        evaluations = read_jsonl(self.run_dir / EVAL_LOG)
        if evaluations:
            best = min(evaluations, key=lambda e: e["fid"])
            page.add_header("FID / KID on the test split: " + "; ".join(
                f"epoch {e['epoch']}: {e['fid']:.2f} / {e['kid_mean']:.4f}" for e in evaluations)
                + f" (best: epoch {best['epoch']}, best_net_G.pth)")
        for row in reversed(rows):
            page.add_header(f"epoch {row['epoch']}, iteration {row['iter']}, {stage_title(row['stage'])}")
            files = [im["file"] for im in row["images"]]
            page.add_images(files, [page_caption(im["label"], row["stage"]) for im in row["images"]], files,
                            width=self.winsize)
        page.save()


def _write_json_atomically(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
