"""The live training view: visdom client robustness, HTML pages, loss-curve PNGs."""
from __future__ import annotations

import json
import logging
import re
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from browser_helpers import VisdomServer, display_opts, free_port
from util import visualizer as visualizer_module
from util.html import HTML
from util.loss_plot import loss_figure, plot_loss_log, read_loss_log, stage_segments
from util.visualizer import Visualizer, tensor_to_image

COOP = {"EBM": 0.9, "teach": 0.4, "f_data": 1.2, "f_revised": 0.7, "langevin_change": 0.05,
        "NCE": 2.5, "NCE_Y": 2.4}
ADV = {"G_GAN": 0.5, "D_real": 0.3, "D_fake": 0.25, "G": 2.0, "NCE": 1.5, "NCE_Y": 1.4}


def losses(stage: str, it: int) -> dict[str, float]:
    base = COOP if stage == "coop" else ADV
    return {k: v + it / 100 for k, v in base.items()}


def visuals() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"real_A": torch.rand(2, 3, 16, 16, generator=g) * 2 - 1,
            "fake_B": torch.rand(2, 3, 16, 16, generator=g) * 2 - 1,
            "revised_B": torch.rand(2, 1, 16, 16, generator=g) * 2 - 1}


def write_log(path: Path, records: list[tuple[int, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for it, stage in records:
            f.write(json.dumps({"epoch": 1, "iter": it, "epoch_iter": it, "stage": stage,
                                "losses": losses(stage, it), "sec_per_iter": 0.2,
                                "data_sec": 0.01}) + "\n")


def pane_points(server: VisdomServer, win: str) -> dict[str, list[tuple[float, float]]]:
    traces = server.window_data(win)["content"]["data"]
    return {t["name"]: list(zip(t["x"], t["y"])) for t in traces}


def expected_points(stage: str, iters: list[int]) -> dict[str, list[tuple[float, float]]]:
    names = COOP if stage == "coop" else ADV
    return {n: [(float(i), pytest.approx(losses(stage, i)[n])) for i in iters] for n in names}


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "util.visualizer" and r.levelno >= logging.WARNING]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with VisdomServer(tmp_path_factory.mktemp("visdom")) as s:
        yield s


def test_display_id_zero_never_opens_a_socket(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the Visualizer opened a connection with display_id 0")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for opt, enabled in [(display_opts(checkpoints_dir=tmp_path, port=1, display_id=0), True),
                         (display_opts(checkpoints_dir=tmp_path, port=1), False)]:
        v = Visualizer(opt, enabled=enabled)
        v.plot_current_losses(epoch=1, total_iters=1, losses=COOP, stage="coop")
        v.display_current_results(visuals(), epoch=1, total_iters=1, stage="coop")
    # enabled=False (a non-zero DDP rank) writes nothing either.
    v.save_html(visuals(), epoch=1, total_iters=1, stage="coop")
    assert not (tmp_path / "run" / "web").exists()


def test_absent_server_warns_once_and_never_blocks(tmp_path, caplog):
    port = free_port()  # nothing listens here
    v = Visualizer(display_opts(checkpoints_dir=tmp_path, port=port), retry_seconds=0)
    start = time.monotonic()
    for it in range(1, 21):
        v.plot_current_losses(epoch=1, total_iters=it, losses=COOP, stage="coop")
        v.display_current_results(visuals(), epoch=1, total_iters=it, stage="coop")
    assert time.monotonic() - start < 3
    [warning] = warnings_of(caplog)
    assert f"python -m visdom.server -port {port} -bind_local" in warning
    assert "\n" not in warning


def test_another_server_on_the_port_warns_like_an_absent_one(tmp_path, caplog):
    """An HTTP server that is not visdom answers every send with an error status (501 here)."""
    import http.server
    import threading

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        v = Visualizer(display_opts(checkpoints_dir=tmp_path, port=other.server_address[1]), retry_seconds=60)
        for it in range(1, 4):
            v.plot_current_losses(epoch=1, total_iters=it, losses=COOP, stage="coop")
            v.display_current_results(visuals(), epoch=1, total_iters=it, stage="coop")
        other.shutdown()
    [warning] = warnings_of(caplog)
    assert warning.startswith("no visdom server answers at ")


def test_missing_visdom_warns_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "visdom", None)  # makes `import visdom` fail
    v = Visualizer(display_opts(checkpoints_dir=tmp_path, port=free_port()))
    v.plot_current_losses(epoch=1, total_iters=1, losses=COOP, stage="coop")
    v.display_current_results(visuals(), epoch=1, total_iters=1, stage="coop")
    [warning] = warnings_of(caplog)
    assert "visdom is not installed" in warning


def test_hung_server_costs_one_short_timeout_per_retry(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(visualizer_module, "_HTTP_TIMEOUT", (0.2, 0.2))
    with socket.socket() as hung:  # accepts connections, never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        opt = display_opts(checkpoints_dir=tmp_path, port=hung.getsockname()[1])
        v = Visualizer(opt, retry_seconds=60)
        start = time.monotonic()
        for it in range(1, 11):
            v.plot_current_losses(epoch=1, total_iters=it, losses=COOP, stage="coop")
        assert time.monotonic() - start < 1.5  # one timed-out try, then no retry within 60 s
    assert len(warnings_of(caplog)) == 1


def test_restarted_server_gets_the_complete_history(tmp_path, caplog):
    server = VisdomServer(tmp_path / "visdom")
    server.start()
    v = Visualizer(display_opts(checkpoints_dir=tmp_path, port=server.port), retry_seconds=0)
    plan = [(it, "coop" if it <= 4 else "adversarial") for it in range(1, 10)]
    try:
        for it, stage in plan[:3]:
            v.plot_current_losses(epoch=1, total_iters=it, losses=losses(stage, it), stage=stage)
        server.stop()  # down while iterations 4-6 are logged (the stage switches at 5)
        for it, stage in plan[3:6]:
            v.plot_current_losses(epoch=1, total_iters=it, losses=losses(stage, it), stage=stage)
        server.start()
        it, stage = plan[6]
        v.plot_current_losses(epoch=1, total_iters=it, losses=losses(stage, it), stage=stage)
        assert pane_points(server, "1_run_loss_coop") == expected_points("coop", [1, 2, 3, 4])
        assert pane_points(server, "1_run_loss_adversarial") == expected_points(
            "adversarial", [5, 6, 7])
        server.stop()  # a restart between two calls: no failure is ever seen
        server.start()
        for it, stage in plan[7:]:
            v.plot_current_losses(epoch=1, total_iters=it, losses=losses(stage, it), stage=stage)
        assert pane_points(server, "1_run_loss_coop") == expected_points("coop", [1, 2, 3, 4])
        assert pane_points(server, "1_run_loss_adversarial") == expected_points(
            "adversarial", [5, 6, 7, 8, 9])
    finally:
        server.stop()
    assert len(warnings_of(caplog)) == 1


def test_a_stage_logged_once_shows_its_point(tmp_path, server):
    v = Visualizer(display_opts(checkpoints_dir=tmp_path, port=server.port, display_id=8))
    v.plot_current_losses(epoch=1, total_iters=1, losses=losses("coop", 1), stage="coop")
    traces = server.window_data("8_run_loss_coop")["content"]["data"]
    assert traces and all("markers" in t["mode"] for t in traces)
    assert pane_points(server, "8_run_loss_coop") == expected_points("coop", [1])


def test_resumed_run_plots_the_logged_history(tmp_path, server):
    write_log(tmp_path / "run" / "loss_log.jsonl", [(1, "coop"), (2, "coop"), (3, "coop")])
    opt = display_opts(checkpoints_dir=tmp_path, port=server.port, display_id=7)
    v = Visualizer(opt)
    v.plot_current_losses(epoch=1, total_iters=4, losses=losses("coop", 4), stage="coop")
    v.plot_current_losses(epoch=1, total_iters=5, losses=losses("coop", 5), stage="coop")
    assert pane_points(server, "7_run_loss_coop") == expected_points("coop", [1, 2, 3, 4, 5])
    # Resuming from an earlier checkpoint supersedes the iterations after it.
    v.plot_current_losses(epoch=1, total_iters=3, losses=losses("coop", 3), stage="coop")
    assert pane_points(server, "7_run_loss_coop") == expected_points("coop", [1, 2, 3])


def test_images_reach_visdom(tmp_path, server):
    v = Visualizer(display_opts(checkpoints_dir=tmp_path, port=server.port, display_id=3))
    v.display_current_results(visuals(), epoch=2, total_iters=40, stage="coop")
    window = server.window_data("3_run_images")
    assert window["type"] == "image"
    assert "iter 40" in window["title"] and "cooperative" in window["title"]
    assert window["content"]["caption"] == "real_A | fake_B | revised_B"


def page_rows(web_dir: Path) -> tuple[list[str], list[str]]:
    html = (web_dir / "index.html").read_text()
    return re.findall(r"<h3>(.*?)</h3>", html), re.findall(r'<img src="([^"]+)"', html)


def test_html_rows_newest_first_and_survive_a_restart(tmp_path):
    write_log(tmp_path / "run" / "loss_log.jsonl", [(10, "coop"), (20, "adversarial")])
    opt = display_opts(checkpoints_dir=tmp_path, port=1, display_id=0)
    Visualizer(opt).save_html(visuals(), epoch=1, total_iters=10, stage="coop")
    Visualizer(opt).save_html(visuals(), epoch=1, total_iters=20, stage="adversarial")
    resumed = Visualizer(opt)
    resumed.save_html(visuals(), epoch=2, total_iters=30, stage="adversarial")
    web = tmp_path / "run" / "web"
    headers, images = page_rows(web)
    assert headers[0].startswith("loss curves")
    assert headers[1:] == ["epoch 2, iteration 30, stage 2: adversarial",
                           "epoch 1, iteration 20, stage 2: adversarial",
                           "epoch 1, iteration 10, stage 1: cooperative (EBM)"]
    assert images[0].startswith("images/loss_curve.png?v=30")
    assert [Path(s).name.split("_", 2)[2] for s in images[1:4]] == [
        "real_A.png", "fake_B.png", "revised_B.png"]
    for src in images:
        assert Image.open(web / src.split("?")[0]).size[0] > 0
    # Resuming from iteration 20 replaces the rows logged after it.
    resumed.save_html(visuals(), epoch=1, total_iters=20, stage="adversarial")
    assert page_rows(web)[0][1:] == ["epoch 1, iteration 20, stage 2: adversarial",
                                     "epoch 1, iteration 10, stage 1: cooperative (EBM)"]


def test_html_columns_in_reading_order_with_plain_captions(tmp_path):
    opt = display_opts(checkpoints_dir=tmp_path, port=1, display_id=0)
    g = torch.Generator().manual_seed(1)
    shuffled = {name: torch.rand(1, 3, 8, 8, generator=g) * 2 - 1
                for name in ("idt_B", "real_B", "revised_B", "fake_B", "real_A")}  # the model's order may differ
    v = Visualizer(opt)
    v.save_html(shuffled, epoch=1, total_iters=1, stage="coop")
    v.save_html({k: t for k, t in shuffled.items() if k != "revised_B"}, epoch=1, total_iters=2,
                stage="adversarial")
    html = (tmp_path / "run" / "web" / "index.html").read_text()
    captions = re.findall(r"<p>(.*?)</p>", html)
    assert captions == ["input x (real A)", "G(x), translation", "real B", "identity: G(real B)",
                        "input x (real A)", "G(x), proposal", "Langevin-revised G(x): G's target in stage 1",
                        "real B", "identity: G(real B)"]
    srcs = page_rows(tmp_path / "run" / "web")[1]
    assert [Path(s).stem.split("_", 2)[2] for s in srcs[-5:]] == ["real_A", "fake_B", "revised_B", "real_B", "idt_B"]


def test_no_html_writes_nothing(tmp_path):
    opt = display_opts(checkpoints_dir=tmp_path, port=1, display_id=0, no_html=True)
    Visualizer(opt).save_html(visuals(), epoch=1, total_iters=1, stage="coop")
    assert not (tmp_path / "run" / "web").exists()


def test_html_page(tmp_path):
    page = HTML(tmp_path / "web", "results", refresh=5)
    assert page.get_image_dir() == tmp_path / "web" / "images"
    page.add_header("a header")
    page.add_images(["images/x.png"], ["x"], ["images/x.png"], width=64)
    page.save()
    html = (tmp_path / "web" / "index.html").read_text()
    assert '<meta content="5" http-equiv="refresh">' in html
    assert '<img src="images/x.png" style="width:64px; max-width:calc((100vw - 56px) / 1)">' in html
    assert sorted(p.name for p in (tmp_path / "web").iterdir()) == ["images", "index.html"]


def test_tensor_to_image():
    t = torch.tensor([-1.0, 0.0, 1.0, 3.0]).reshape(1, 1, 2, 2)
    image = tensor_to_image(t)
    assert image.dtype == np.uint8 and image.shape == (2, 2, 3)
    assert image[..., 0].tolist() == [[0, 128], [255, 255]]


def test_loss_plot_of_both_stages(tmp_path):
    log = tmp_path / "loss_log.jsonl"
    plan = [(i, "coop") for i in range(0, 100, 10)] + [(i, "blend") for i in range(100, 120, 10)]
    plan += [(i, "adversarial") for i in range(120, 300, 10)]
    write_log(log, plan + [(150, "adversarial")])  # a resumed run rewinds to 150
    with log.open("a") as f:
        f.write('{"epoch": 1, "it')  # a writer caught mid-line
    records = read_loss_log(log)
    assert [r["iter"] for r in records] == [i for i, _ in plan if i <= 150]
    assert stage_segments(records) == [("coop", 0, 90), ("blend", 100, 110),
                                       ("adversarial", 120, 150)]
    png = tmp_path / "loss.png"
    assert plot_loss_log(log, png, title="run")
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    assert len(pixels) > 100_000
    coop_shade = np.array([0xDB, 0xE9, 0xF6])
    assert (pixels == coop_shade).all(axis=1).sum() > 1000  # the coop stage is shaded
    assert not plot_loss_log(tmp_path / "missing.jsonl", tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_loss_plot_marks_the_switch_where_it_happened_not_at_the_next_log():
    records = [{"iter": 50, "stage": "coop", "stage_start": 1, "losses": {}},
               {"iter": 150, "stage": "coop", "stage_start": 1, "losses": {}},
               {"iter": 200, "stage": "adversarial", "stage_start": 154, "losses": {}},
               {"iter": 250, "stage": "adversarial", "stage_start": 154, "losses": {}}]
    assert stage_segments(records) == [("coop", 1, 150), ("adversarial", 154, 250)]


def test_loss_plot_shows_a_stage_logged_once():
    records = [{"iter": 5, "stage": "coop", "losses": {"EBM": 2.0}},
               {"iter": 10, "stage": "adversarial", "losses": {"G": 1.0}},
               {"iter": 15, "stage": "adversarial", "losses": {"G": 0.5}}]
    coop, adversarial = loss_figure(records).axes[:2]
    assert coop.lines[-1].get_marker() == "o"  # one point: a line alone would draw nothing
    assert adversarial.lines[-1].get_marker() in ("None", None, "")
