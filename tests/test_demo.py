"""`make demo` end to end with its exact flags (the Makefile is their one place): data, train.py with
every CoopInit flag at its default, test.py, the toy score. The demo must translate: stripes where
the horses were, the horses' outlines and the background's colours about kept. Each threshold sits
below the worst of seeds 0, 1, 2 and well above a collapsed or untranslated demo (README, "Quick
start", has the per-seed scores); this test runs seed 0."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# On a 2-core CPU (2 threads, as a user runs it) seeds 0 / 1 / 2 gave stripe strength 0.82 / 0.77 / 0.86,
# mean silhouette IoU 0.77 / 0.79 / 0.75 with 98 / 100 / 96 % of the images kept, and background change
# 0.032 / 0.034 / 0.032 (docs/results.md, "The demo"; translated with G instead of its moving average:
# IoU 0.58-0.71, 68-96 % kept). The untranslated horses
# score 0.04 stripes; the blurred blobs of an earlier demo scored IoU 0.27-0.35 with 0-2 % kept; the
# instance-norm demo changed the background by 0.118-0.121, and a repainted scene changes >= 0.2.
MIN_STRIPE_STRENGTH = 0.6
MIN_SILHOUETTE_IOU = 0.6
MIN_SILHOUETTE_KEPT = 0.8
MAX_BACKGROUND_CHANGE = 0.06


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_make_demo_translates(tmp_path):
    env = {name: value for name, value in os.environ.items() if name != "OMP_NUM_THREADS"}  # as a user runs it
    done = subprocess.run(["make", "-C", str(REPO), "demo", f"DEMO_DATA={tmp_path / 'toy'}",
                           f"DEMO_CHECKPOINTS={tmp_path / 'checkpoints'}", f"DEMO_RESULTS={tmp_path / 'results'}"],
                          capture_output=True, text=True, timeout=1100, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "stripe strength" in done.stdout and "silhouette IoU" in done.stdout  # the score is printed
    score = json.loads((tmp_path / "results" / "toy_demo" / "test_latest" / "score.json").read_text())["toy"]
    assert score["silhouette_iou"] >= MIN_SILHOUETTE_IOU, score
    assert score["stripe_strength"] >= MIN_STRIPE_STRENGTH, score
    assert score["silhouette_kept"] >= MIN_SILHOUETTE_KEPT, score
    assert score["background_error"] <= MAX_BACKGROUND_CHANGE, score
    assert "=== CoopInit" in (tmp_path / "checkpoints" / "toy_demo" / "loss_log.txt").read_text()
