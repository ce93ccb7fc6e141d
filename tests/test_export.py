"""export.py: TorchScript and ONNX files that load in a fresh process, take any size, match PyTorch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import export
from conftest import ROOT
from models import load_translator

# Runs in a fresh interpreter, as a consumer of the file would: no project code imported.
CONSUMER = {
    "torchscript": """
import json, sys, numpy as np, torch
files = {"coopinit.json": ""}
module = torch.jit.load(sys.argv[1], map_location="cpu", _extra_files=files)
np.save(sys.argv[3], module(torch.from_numpy(np.load(sys.argv[2]))).detach().numpy())
print(files["coopinit.json"].decode())
""",
    "onnx": """
import json, sys, numpy as np, onnx, onnxruntime
meta = {p.key: p.value for p in onnx.load(sys.argv[1]).metadata_props}
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
np.save(sys.argv[3], session.run(None, {"image": np.load(sys.argv[2])})[0])
print(json.dumps({"input": json.loads(meta["input"]), "options": json.loads(meta["options"])}))
""",
}


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_round_trip_in_a_fresh_process(fmt, tiny_trained_run, toy_dataroot, tmp_path, capsys):
    checkpoints, name = tiny_trained_run
    path = tmp_path / "new" / "folder" / f"G.{'pt' if fmt == 'torchscript' else 'onnx'}"  # made by the export
    assert export.main(["--name", name, "--checkpoints_dir", str(checkpoints), "--dataroot", str(toy_dataroot),
                        "--format", fmt, "--export_path", str(path), "--gpu_ids", "-1", "--num_threads", "0"]) == 0
    # the documented files only: ONNX's weights inlined, no stray FILE.data from the exporter
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".json"]
    printed = capsys.readouterr().out
    assert "max abs diff" in printed and "cropped to" in printed  # the parity table, odd size included
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["input"]["range"] == [-1.0, 1.0] and sidecar["input"]["channel_order"] == "RGB"
    assert sidecar["options"]["ngf"] == 8 and sidecar["parity"]["max_abs_diff"] <= 1e-4

    images = (torch.rand(2, 3, 37, 45, generator=torch.Generator().manual_seed(0)) * 2 - 1)  # odd H and W
    np.save(tmp_path / "in.npy", images.numpy())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", CONSUMER[fmt], str(path), str(tmp_path / "in.npy"),
                             str(tmp_path / "out.npy")], capture_output=True, text=True, env=env, cwd=tmp_path,
                            check=True)
    meta = json.loads(result.stdout.strip().splitlines()[-1])
    assert meta["input"]["from_8bit"] == "pixel / 127.5 - 1" and meta["options"]["netG"] == "resnet_4blocks"
    got = np.load(tmp_path / "out.npy")
    expected = load_translator(checkpoints / name, device="cpu")(images).numpy()
    assert got.shape == (2, 3, 37, 45)
    assert np.abs(got - expected).max() <= 1e-4


def test_export_reports_a_parity_failure(tiny_trained_run, toy_dataroot, tmp_path, monkeypatch, capsys):
    checkpoints, name = tiny_trained_run
    real = export.load_exported
    monkeypatch.setattr(export, "load_exported", lambda path: (lambda images: real(path)(images) + 1e-3))
    assert export.main(["--name", name, "--checkpoints_dir", str(checkpoints), "--dataroot", str(toy_dataroot),
                        "--format", "torchscript", "--export_path", str(tmp_path / "G.pt"), "--gpu_ids", "-1",
                        "--num_threads", "0"]) == 1
    assert "differs from PyTorch by 1.00e-03" in capsys.readouterr().err


def test_export_refuses_test_py_flags_it_would_ignore(tiny_trained_run, tmp_path, capsys):
    checkpoints, name = tiny_trained_run
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--name", name, "--checkpoints_dir", str(checkpoints), "--export_path", str(tmp_path / "G.pt"),
                     "--tile", "64", "--video", "in.mp4", "--out", "out.mp4", "--results_dir", "./results"])
    assert exit_info.value.code == 2
    # refused when given at all, even at test.py's default (./results)
    assert "error: --results_dir, --tile, --video, --out: test.py's flags, which export.py does not use" \
        in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export.main(["--name", name, "--checkpoints_dir", str(checkpoints), "--aspect_ratio", "1.0"])
    assert "error: --aspect_ratio: test.py's flag, which" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_export_path_that_cannot_be_a_file_is_refused_before_any_work(tiny_trained_run, tmp_path, capsys):
    checkpoints, name = tiny_trained_run
    run = ["--name", name, "--checkpoints_dir", str(checkpoints)]
    with pytest.raises(SystemExit):
        export.main(run + ["--export_path", str(tmp_path)])
    assert f"--export_path {tmp_path} is a folder: name the file to write, e.g. {tmp_path / 'latest_net_G.onnx'}" \
        in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")
    with pytest.raises(SystemExit):
        export.main(run + ["--format", "torchscript", "--export_path", str(tmp_path / "a_file" / "G.pt")])
    assert f"{tmp_path / 'a_file'} is a file, not a folder" in capsys.readouterr().err


def test_export_help_names_the_formats():
    out = subprocess.run([sys.executable, str(ROOT / "export.py"), "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "--format {torchscript,onnx}" in out and "--export_path" in out
    assert "--tile" not in out and "--video" not in out  # test.py's, refused by export.py


@pytest.mark.parametrize("script, default", [("export.py", "(default: 4)"), ("test.py", "(default: inf, i.e. all)")])
def test_help_states_the_num_test_default_once(script, default):
    out = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                         check=True).stdout
    entry = " ".join(out.split("--num_test NUM_TEST", 2)[2].split("\n  --", 1)[0].split())
    assert entry.endswith(default) and entry.count("default") == 1
