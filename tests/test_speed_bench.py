"""bench/speed.py's summary of the side-by-side runs: medians over rounds, speed-ups against the
reference, the CoopInit stage against the reference's CUT iteration; bench/reference_cut.py's check
of the reference checkout; bench/timing.py's generator timing; both refuse to run as commands."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys

import pytest

from bench import reference_cut, speed, timing
from conftest import ROOT


def run(wall: float, cpu: float, peak: float) -> dict:
    return {"sec_per_iter": wall, "cpu_sec_per_iter": cpu, "peak_mib": peak}


def test_summary_takes_medians_over_rounds_and_pairs_rounds_for_the_range():
    rows = {("train", "cut", 128, "reference"): [run(4, 2, 10), run(6, 3, 12), run(5, 2.5, 11)],
            ("train", "cut", 128, "fast"): [run(2, 1, 9), run(2, 1.5, 8), run(4, 1, 9)],
            ("train", "coop", 128, "fast"): [run(2.5, 1.25, 9), run(2.5, 1.25, 9), run(2.5, 1.25, 9)]}
    cut, coop = speed.summarize(rows, [("train", "cut", 128, "fast"), ("train", "coop", 128, "fast")])
    assert (cut["reference"], cut["ours"]) == (5, 2)
    assert cut["speedup"] == pytest.approx(2.5)  # of the medians
    assert cut["speedup_cpu"] == pytest.approx(2.5 / 1)
    assert (cut["speedup_min"], cut["speedup_max"]) == (pytest.approx(1.25), pytest.approx(3))  # 5/4, 6/2
    assert (cut["ref_peak_mib"], cut["ours_peak_mib"]) == (12, 9)
    assert coop["speedup"] == pytest.approx(2)  # the cooperative stage against the reference's CUT iteration
    table = speed.table([cut, coop], {"machine": "m", "torch": "t", "threads": 2, "device": "CPU",
                                      "reference_commit": "c", "rounds": 3})
    assert "| CUT training | 128 | fast | 5.0000 s/iter | 2.0000 s/iter | **2.50x** (1.25-3.00) |" in table
    assert "**2.00x** (vs reference CUT)" in table


def test_a_folder_that_is_not_the_reference_code_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not a checkout of"):
        reference_cut.obtain_reference(tmp_path)


def fake_reference(path):
    (path / "models").mkdir(parents=True)
    (path / "models" / "cut_model.py").write_text("class CUTModel: pass\n")
    (path / "train.py").write_text("print('train')\n")
    return path


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_python_fingerprint_hashes_files_as_git_does(tmp_path):
    reference = fake_reference(tmp_path / "ref")
    (reference / "models" / "__pycache__").mkdir()
    (reference / "models" / "__pycache__" / "junk.py").write_text("x = 1\n")  # left out, as git ignores it
    git("init", "-q", cwd=reference)
    git("add", "models/cut_model.py", "train.py", cwd=reference)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x", cwd=reference)
    listed = sorted(f"{line.split()[3]} {line.split()[2]}\n" for line in
                    git("ls-tree", "-r", "HEAD", cwd=reference).splitlines())
    assert reference_cut.python_fingerprint(reference) == hashlib.sha1("".join(listed).encode()).hexdigest()
    (reference / "train.py").write_text("print('changed')\n")
    assert reference_cut.python_fingerprint(reference) != hashlib.sha1("".join(listed).encode()).hexdigest()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_copy_inside_another_repository_is_not_given_that_repositorys_commit(tmp_path):
    git("init", "-q", cwd=tmp_path)
    (tmp_path / "x").write_text("x")
    git("add", "x", cwd=tmp_path)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x", cwd=tmp_path)
    outer = git("rev-parse", "HEAD", cwd=tmp_path).strip()
    note = reference_cut.obtain_reference(fake_reference(tmp_path / "shared" / "refcut"))
    assert outer not in note and "not a git checkout" in note


def test_generator_rows_show_gpu_peaks_and_the_first_call():
    def forward(wall: float, gpu: float) -> dict:
        return {"sec_per_image": wall, "cpu_sec_per_image": wall, "peak_mib": 900, "gpu_peak_mib": gpu,
                "first_call_s": 30.0}
    reference = [{**forward(0.02, 500), "first_call_s": 0.5}, {**forward(0.03, 520), "first_call_s": 0.4}]
    rows = {("generator", "cut", 256, "reference"): reference,
            ("generator", "cut", 256, "compile"): [forward(0.01, 400), forward(0.01, 410)]}
    (entry,) = speed.summarize(rows, [("generator", "cut", 256, "compile")])
    assert (entry["ref_gpu_peak_mib"], entry["ours_gpu_peak_mib"]) == (520, 410)
    assert entry["speedup"] == pytest.approx(2.5)
    table = speed.table([entry], {"machine": "m", "torch": "t", "threads": 2, "device": "GPU x",
                                  "reference_commit": "c", "rounds": 2})
    assert "(first call 30.0 s) | 256 | compile | 0.0250 s/image | 0.0100 s/image | **2.50x**" in table
    assert table.rstrip().endswith("| 520 / 410 |")


def test_timed_forwards_times_the_calls_after_the_first_and_the_warmup():
    import argparse
    import torch

    calls = []
    result = timing.timed_forwards(torch, calls.append, size=8, device="cpu", dtype=torch.float32,
                                   args=argparse.Namespace(warmup=2, generator_iters=3))
    assert len(calls) == 1 + 2 + 3 and calls[0].shape == (1, 3, 8, 8)
    assert -1 <= calls[0].min() and calls[0].max() <= 1
    assert len(result["times"]) == 3 and result["first_call_s"] >= 0
    assert result["gpu_peak_mib"] is None  # CUDA never started: no GPU figure


@pytest.mark.parametrize("module", ["bench.reference_cut", "bench.timing"])
def test_library_modules_say_they_are_not_commands(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and not result.stdout
    assert "a library of bench/speed.py, not a command: python bench/speed.py --help" in result.stderr
