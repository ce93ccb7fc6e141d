"""bench/inference_fidelity.py: its JSON line is strict JSON, identical outputs included (no Infinity)."""
from __future__ import annotations

import json

import pytest
import torch

from bench import inference_fidelity


def strict_json(text: str) -> object:
    """json.loads refusing Infinity, -Infinity and NaN, as strict readers (JavaScript, jq) do."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_identical_outputs_have_a_null_psnr():
    levels = torch.arange(12.0).reshape(1, 3, 2, 2)
    same = inference_fidelity.compare(levels, levels.clone())
    assert same == {"max_levels": 0.0, "mean_levels": 0.0, "pixels_differing": 0.0, "psnr_db": None}
    assert strict_json(json.dumps(same, allow_nan=False))["psnr_db"] is None
    assert inference_fidelity.compare(levels, levels + 1)["psnr_db"] == pytest.approx(48.13, abs=0.01)  # 255**2 / 1


def test_the_printed_json_is_strict(tiny_trained_run, toy_dataroot, capsys):
    checkpoints, name = tiny_trained_run
    inference_fidelity.main(["--run", str(checkpoints / name), "--images", str(toy_dataroot / "testA"),
                             "--count", "2", "--size", "32"])
    results = strict_json(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(results) == {"float32 + Winograd", "--amp (bfloat16 weights)"}
    for row in results.values():
        assert row["psnr_db"] is None if row["max_levels"] == 0 else row["psnr_db"] > 0
