"""Security: checkpoints never unpickle code, and servers the project starts listen on 127.0.0.1 only."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

import train
from util.checkpoint import CheckpointError, safe_load

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("coopinit_test_script", ROOT / "test.py")
test_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_script)

SKIPPED_DIRS = {".venv", ".git", ".cache", "checkpoints", "results", "node_modules", "__pycache__"}


def project_files(*suffixes: str) -> list[Path]:
    """The repository's own files with these suffixes (not the virtual environment, runs or caches)."""
    found = []
    for root, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        found += [Path(root) / name for name in names if Path(name).suffix in suffixes or name in suffixes]
    return sorted(found)


def calls(source: str, function: str) -> list[str]:
    """The text of every `function(...)` call in `source`, parentheses balanced."""
    found = []
    for match in re.finditer(re.escape(function) + r"\(", source):
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(source)):
            depth += {"(": 1, ")": -1}.get(source[end], 0)
            if depth == 0:
                break
        found.append(source[match.start():end + 1])
    return found


def test_every_torch_load_uses_weights_only_and_nothing_else_unpickles():
    sources = {path: path.read_text(errors="replace") for path in project_files(".py")}
    loads = {f"{path.relative_to(ROOT)}: {call}" for path, text in sources.items()
             for call in calls(text, "torch.load") if path != Path(__file__)}
    assert loads, "expected torch.load calls (util/checkpoint.py)"
    assert all("weights_only=True" in call for call in loads), loads
    for path, text in sources.items():
        if path != Path(__file__):
            assert not re.search(r"\bpickle\.loads?\(|allow_pickle=True|weights_only=False", text), path


class RunsCode:
    """Unpickling it would call open(marker, "w"): the proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture
def trained(tiny_train_args):
    argv = tiny_train_args("victim", max_dataset_size=1)
    assert train.main(argv) == 0
    return argv, Path(argv[argv.index("--checkpoints_dir") + 1]) / "victim"


def plant(path: Path, marker: Path) -> None:
    """Replace a checkpoint by one that carries a Python object, keeping the tensors around it."""
    torch.save({"weights": torch.zeros(2), "payload": RunsCode(marker)}, path)


def test_a_checkpoint_carrying_a_python_object_is_refused_everywhere(trained, tmp_path, capsys):
    argv, folder = trained
    marker = tmp_path / "code-ran"
    expected = "it holds a pickled Python object (io.open), and unpickling it could run code"

    plant(tmp_path / "evil.pth", marker)
    with pytest.raises(CheckpointError, match=re.escape(f"refusing to load {tmp_path / 'evil.pth'}: {expected}")):
        safe_load(tmp_path / "evil.pth")

    shutil.copy(folder / "latest_net_G_ema.pth", tmp_path / "good_G.pth")  # the generator test.py loads
    plant(folder / "latest_net_G_ema.pth", marker)
    capsys.readouterr()
    assert test_script.main(argv[:6] + ["--num_threads", "0", "--results_dir", str(tmp_path / "results")]) == 2
    assert f"error: refusing to load {folder / 'latest_net_G_ema.pth'}: {expected}" in capsys.readouterr().err

    shutil.copy(tmp_path / "good_G.pth", folder / "latest_net_G_ema.pth")
    plant(folder / "latest_state.pth", marker)
    assert train.main(argv + ["--continue_train"]) == 2
    assert f"error: refusing to load {folder / 'latest_state.pth'}: {expected}" in capsys.readouterr().err
    assert not marker.exists()


def test_servers_the_project_starts_listen_on_localhost_only():
    """visdom binds every interface unless told -bind_local; Chromium's debugging port likewise."""
    starts = 0
    for path in project_files(".py", ".sh", ".md", ".txt", ".yml", ".yaml", ".cfg", ".toml", "Makefile"):
        if path == Path(__file__):
            continue
        text = path.read_text(errors="replace")
        for line in text.splitlines():
            # Docs and scripts: any start command. Python: the commands it prints (prose may name the module).
            if re.search(r"-m visdom\.server\b", line) and (path.suffix != ".py" or "-port" in line):
                starts += 1
                assert "-bind_local" in line, f"{path.relative_to(ROOT)}: {line.strip()}"
        if "download_scripts_and_run" in text:  # visdom's server started from Python
            starts += 1
            assert '"-bind_local"' in text, path
        assert "0.0.0.0" not in text, path
        for address in re.findall(r"--remote-debugging-address=([\w.]+)", text):
            assert address == "127.0.0.1", path
    assert starts, "expected the visdom start command in the docs and the test helpers"
