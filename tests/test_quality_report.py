"""bench/quality.py's report: each arm minus CUT paired by dataset, source and seed, and --report pooling
finished results of several tags without running anything."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from scipy.stats import ttest_1samp

from bench import quality


def result(arm: str, seed: int, fid: float, *, source: str = "", kid: float = 0.1) -> dict:
    ev = {"fid": fid, "kid_mean": kid, "iter": 10, "epoch": 1}
    return {"dataset": "cat2dog", "arm": arm, "seed": seed, "source": source, "wall_s": 60.0,
            "evals": [ev], "final": ev, "best": ev}


def test_paired_differences_count_and_t_test():
    cut = [result("CUT", s, f) for s, f in enumerate((300.0, 280.0, 290.0))]
    coop = [result("CoopInit-CUT", s, f) for s, f in enumerate((290.0, 282.0, 270.0))]
    text = quality.paired(cut + coop)
    diffs = [-10.0, 2.0, -20.0]
    row = next(line for line in text.splitlines() if "CoopInit-CUT − CUT" in line)
    assert row.startswith("| cat2dog | CoopInit-CUT − CUT | 3 | -9.33 ± 11.02 (2 of 3 better, "
                          f"p {ttest_1samp(diffs, 0).pvalue:.3f}) |")


def test_pairs_need_the_same_source_and_seed():
    runs = [result("CUT", 0, 300.0, source="gpu"), result("CoopInit-CUT", 0, 250.0, source="cpu"),
            result("CoopInit-CUT", 1, 250.0, source="gpu")]
    assert quality.paired(runs) == ""  # no CoopInit run has a CUT partner
    runs.append(result("CUT", 0, 260.0, source="cpu"))
    row = quality.paired(runs).splitlines()[-1]
    assert "| 1 | -10.00 ± 0.00 (1 of 1 better) |" in row  # only cpu seed 0 pairs; no t-test on one pair


def test_report_pools_tags_and_names_a_missing_one(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([result("CUT", 0, 300.0), result("CoopInit-CUT", 0, 290.0)]))
    (tmp_path / "b.json").write_text(json.dumps([result("CUT", 0, 280.0), result("CoopInit-CUT", 0, 285.0)]))
    done = subprocess.run([sys.executable, "bench/quality.py", "--out", str(tmp_path), "--report", "a", "b"],
                          capture_output=True, text=True, cwd=quality.REPO)
    assert done.returncode == 0, done.stderr
    assert "| cat2dog | CoopInit-CUT − CUT | 2 | -2.50 ± 10.61 (1 of 2 better) |" in done.stdout
    assert "- cat2dog CoopInit-CUT seed 0 (b): FID 285.0" in done.stdout
    missing = subprocess.run([sys.executable, "bench/quality.py", "--out", str(tmp_path), "--report", "c"],
                             capture_output=True, text=True, cwd=quality.REPO)
    assert missing.returncode == 2 and f"{tmp_path / 'c.json'} does not exist" in missing.stderr


@pytest.mark.parametrize("values, expected", [([1.0], "1.00 ± 0.00"), ([1.0, 3.0], "2.00 ± 1.41")])
def test_mean_std(values, expected):
    assert quality.mean_std(values, 2) == expected
