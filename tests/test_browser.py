"""What a user sees: visdom, the training page and a test results page in headless Chromium.

A tiny real training run (toy data, 32 px, 2 cooperative + 2 adversarial iterations) feeds a
throwaway visdom server; the assertions read the rendered DOM.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from browser_helpers import CHROMIUM, Chromium, VisdomServer, visdom_assets_missing
from util.loss_plot import read_loss_log, stage_title

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None,
                       reason="chromium is not installed (run scripts/install_browser.sh as root)"),
]

REPO = Path(__file__).resolve().parents[1]
NAME = "browser_run"
TINY = ["--crop_size", "32", "--load_size", "32", "--gpu_ids", "-1", "--num_threads", "0",
        "--ngf", "4", "--ndf", "4", "--netG", "resnet_4blocks"]


def run(args: list[str], cwd: Path) -> None:
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="module")
def browser(work: Path):
    with Chromium(work, height=1500) as chromium:  # tall enough for all visdom panes
        yield chromium


@pytest.fixture(scope="module")
def dataroot(work: Path) -> Path:
    root = work / "toy"
    run([str(REPO / "datasets" / "make_toy_dataset.py"), "--out", str(root), "--size", "32",
         "--n_train", "4", "--n_test", "2"], cwd=work)
    return root


@pytest.fixture(scope="module")
def server(work: Path):
    with VisdomServer(work / "visdom") as visdom:
        yield visdom


@pytest.fixture(scope="module")
def trained(work: Path, dataroot: Path, request: pytest.FixtureRequest) -> Path:
    """The run directory of 4 training iterations, shown live in ``server`` when visdom can
    start here (the pages need no visdom)."""
    if visdom_assets_missing():
        display = ["--display_id", "0"]
    else:
        display = ["--display_id", "1", "--display_port", str(request.getfixturevalue("server").port)]
    run([str(REPO / "train.py"), "--dataroot", str(dataroot), "--name", NAME,
         "--checkpoints_dir", str(work / "checkpoints"), *display, "--n_epochs", "1", "--n_epochs_decay", "0",
         "--max_dataset_size", "4", "--display_freq", "1", "--print_freq", "1",
         "--update_html_freq", "2", "--coop_epochs", "0.5", "--coop_langevin_steps", "2", *TINY],
        cwd=work)
    return work / "checkpoints" / NAME


# Per plotly pane: its window title, the legend's names and the drawn line traces.
PANES_JS = """[...document.querySelectorAll('.js-plotly-plot')].map(g => ({
    title: g.closest('.window').querySelector('.bar').innerText,
    legend: [...g.querySelectorAll('.legendtext')].map(t => t.textContent),
    drawn: [...g.querySelectorAll('.scatterlayer .trace path.js-line')]
               .filter(p => (p.getAttribute('d') || '').length > 1).length,
    points: g.data.map(t => t.x.length)}))"""

IMAGES_JS = """[...document.querySelectorAll('.window')].filter(w => w.querySelector('img'))
    .map(w => ({title: w.querySelector('.bar').innerText,
                widths: [...w.querySelectorAll('img')].map(i => i.complete ? i.naturalWidth : 0)}))"""


# The captions of each image row (tables of images), top to bottom.
CAPTIONS_JS = """[...document.querySelectorAll('table')].filter(t => t.querySelector('img'))
    .map(t => [...t.querySelectorAll('p')].map(p => p.textContent))
    .filter(row => !(row.length === 1 && row[0] === 'losses'))"""


def test_visdom_shows_stage_loss_plots_and_images(trained, server, browser, work):
    records = read_loss_log(trained / "loss_log.jsonl")
    stages = list(dict.fromkeys(r["stage"] for r in records))
    assert stages == ["coop", "adversarial"]
    browser.open(f"{server.url}/env/main")
    browser.wait_for(f"{PANES_JS}.filter(p => p.drawn > 0).length === {len(stages)}")
    browser.wait_for(f"{IMAGES_JS}.some(w => w.widths.every(x => x > 0))")
    browser.screenshot(work / "visdom.png")

    panes = browser.evaluate(PANES_JS)
    for stage in stages:
        stage_records = [r for r in records if r["stage"] == stage]
        names = list(stage_records[0]["losses"])
        [pane] = [p for p in panes if stage_title(stage) in p["title"]]
        assert pane["legend"] == names
        assert pane["drawn"] == len(names)  # a visible line per loss
        assert pane["points"] == [len(stage_records)] * len(names)
    [images] = browser.evaluate(IMAGES_JS)
    assert f"iter {records[-1]['iter']}" in images["title"]
    assert images["widths"] and all(w > 0 for w in images["widths"])


def test_training_page_shows_every_image(trained, browser, work):
    browser.open((trained / "web" / "index.html").as_uri())
    assert browser.broken_images() == []
    headers = browser.evaluate("[...document.querySelectorAll('h3')].map(h => h.textContent)")
    assert headers[0].startswith("loss curves")
    assert headers[1:] == ["epoch 1, iteration 4, stage 2: adversarial",
                           "epoch 1, iteration 2, stage 1: cooperative (EBM)"]
    rows = json.loads((trained / "web" / "rows.json").read_text())
    assert browser.evaluate("document.images.length") == 1 + sum(len(r["images"]) for r in rows)
    captions = browser.evaluate(CAPTIONS_JS)
    # stage 1's row (the last) shows the Langevin-revised samples next to G's proposals
    assert captions[-1] == ["input x (real A)", "G(x), proposal",
                            "Langevin-revised G(x): G's target in stage 1", "real B", "identity: G(real B)"]
    assert captions[-2] == ["input x (real A)", "G(x), translation", "real B", "identity: G(real B)"]
    browser.screenshot(work / "training_page.png")
    # a window narrower than a row of four 256 px images: they shrink, the page never scrolls sideways
    browser.send("Emulation.setDeviceMetricsOverride", width=800, height=1500, deviceScaleFactor=1, mobile=False)
    try:
        assert browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        browser.send("Emulation.clearDeviceMetricsOverride")


def test_results_page_shows_input_translation_real_B_and_score(trained, dataroot, browser, work):
    run([str(REPO / "test.py"), "--dataroot", str(dataroot), "--name", NAME,
         "--checkpoints_dir", str(work / "checkpoints"), "--results_dir", str(work / "results"),
         "--num_test", "2", *TINY], cwd=work)
    [page] = (work / "results" / NAME).glob("*/index.html")
    browser.open(page.as_uri())
    assert browser.broken_images() == []
    assert browser.evaluate(CAPTIONS_JS) == [[f"{n} input", f"{n} translation", f"{n} real B, for comparison"]
                                             for n in ("0000", "0001")]
    assert browser.evaluate("document.querySelector('#score')") is None  # not scored yet

    run(["-m", "datasets.toy_score", "--dataroot", str(dataroot), "--results", str(page.parent),
         "--gpu_ids", "-1"], cwd=REPO)
    browser.open(page.as_uri())
    assert browser.broken_images() == []
    score = browser.evaluate("[...document.querySelectorAll('#score li')].map(li => li.textContent)")
    assert [line.split(" ")[0] for line in score] == ["stripe", "silhouette", "background", "FID"]
    assert len(browser.evaluate(CAPTIONS_JS)) == 2  # the rows are still there, under the score
    browser.screenshot(work / "results_page.png")
