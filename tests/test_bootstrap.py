"""scripts/bootstrap.sh on a machine without npm: only visdom's offline assets are skipped, and a
later run adds them once npm is there.

The scripts run in a copy of the repository whose .venv/bin/python is a stand-in: `-m pip` only
logs, anything else runs this interpreter with a stand-in visdom package (VERSION and static/)
first on its path. PATH holds only the tools the scripts use, so npm is absent unless a test
adds it.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("bash", "sh", "cat", "sha256sum", "cut", "dirname", "tr", "grep", "sort", "mkdir", "rm",
         "tar", "gzip", "mv", "touch")
ASSET = re.compile(r"^([^|\s]+@[^|\s]+)\|([^|]+)\|(.+)$", re.MULTILINE)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for script in ("bootstrap.sh", "install_visdom_assets.sh"):
        shutil.copy(ROOT / "scripts" / script, repo / "scripts" / script)
    shutil.copy(ROOT / "requirements.txt", repo / "requirements.txt")
    visdom = tmp_path / "site" / "visdom"
    (visdom / "static").mkdir(parents=True)
    (visdom / "__init__.py").write_text("")
    (visdom / "VERSION").write_text("0.2.4\n")
    venv_bin = repo / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -m ] && [ "$2" = pip ]; then echo "$*" >> "{tmp_path / "pip.log"}"; exit 0; fi\n'
        f'PYTHONPATH="{tmp_path / "site"}" exec "{sys.executable}" "$@"\n')
    (venv_bin / "python").chmod(0o755)
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in TOOLS:
        (tools / tool).symlink_to(shutil.which(tool))
    return repo


def bootstrap(repo: Path) -> subprocess.CompletedProcess:
    env = {"PATH": str(repo.parent / "bin"), "HOME": str(repo.parent)}
    return subprocess.run([str(repo.parent / "bin" / "bash"), str(repo / "scripts" / "bootstrap.sh")],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


def pip_calls(repo: Path) -> int:
    log = repo.parent / "pip.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def add_npm_and_its_packages(repo: Path) -> Path:
    """An npm on PATH (which logs if called) and the npm packages already in the cache."""
    npm_log = repo.parent / "npm.log"
    npm = repo.parent / "bin" / "npm"
    npm.write_text(f'#!/bin/sh\necho "$*" >> "{npm_log}"\nexit 1\n')
    npm.chmod(0o755)
    members: dict[str, list[str]] = {}
    for package, member, _ in ASSET.findall((repo / "scripts" / "install_visdom_assets.sh").read_text()):
        members.setdefault(package, []).append(member)
    cache = repo / ".cache" / "visdom-assets"
    cache.mkdir(parents=True, exist_ok=True)  # the first run made it
    for package, files in members.items():
        with tarfile.open(cache / f"{package.replace('@', '-')}.tgz", "w:gz") as tgz:
            for member in files:
                data = f"/* {package} {member} */".encode()
                info = tarfile.TarInfo(f"package/{member}")
                info.size = len(data)
                tgz.addfile(info, io.BytesIO(data))
    return npm_log


def test_without_npm_only_the_visdom_assets_are_skipped_and_added_once_npm_is_there(repo):
    venv, static = repo / ".venv", repo.parent / "site" / "visdom" / "static"

    first = bootstrap(repo)
    assert first.returncode == 0, first.stderr
    assert "npm not found" in first.stderr
    assert "live visdom view" in first.stderr and "make demo" in first.stderr  # what it disables
    assert "apt-get install npm" in first.stderr  # and how to add them
    assert "-r" in (repo.parent / "pip.log").read_text()  # the requirements were installed
    assert (venv / ".bootstrap-stamp").is_file() and (venv / ".visdom-assets-pending").read_text().strip() == "npm"
    assert not (static / "version.built").exists()

    calls = pip_calls(repo)
    again = bootstrap(repo)
    assert again.returncode == 0 and pip_calls(repo) == calls  # nothing reinstalled
    assert "still missing" in again.stderr and "npm" in again.stderr

    npm_log = add_npm_and_its_packages(repo)
    added = bootstrap(repo)
    assert added.returncode == 0, added.stderr
    assert "Installed visdom 0.2.4 assets" in added.stdout
    assert (static / "version.built").read_text().strip() == "0.2.4"
    assert (static / "js" / "jquery.min.js").read_text() == "/* jquery@3.1.1 dist/jquery.min.js */"
    assert not (venv / ".visdom-assets-pending").exists()
    assert not npm_log.exists()  # the packages were cached: npm was not needed after all
    assert pip_calls(repo) == calls

    quiet = bootstrap(repo)
    assert quiet.returncode == 0 and quiet.stdout == quiet.stderr == ""


def test_assets_script_without_npm_exits_3_and_changes_nothing(repo):
    static = repo.parent / "site" / "visdom" / "static"
    (static / "version.built").write_text("0.2.3\n")  # an older build
    result = subprocess.run([str(repo.parent / "bin" / "bash"), str(repo / "scripts" / "install_visdom_assets.sh"),
                             str(repo / ".venv" / "bin" / "python")], capture_output=True, text=True,
                            env={"PATH": str(repo.parent / "bin")}, timeout=60, check=False)
    assert result.returncode == 3
    assert "npm not found" in result.stderr and "install_visdom_assets.sh" in result.stderr
    assert (static / "version.built").read_text() == "0.2.3\n"
    assert os.listdir(static) == ["version.built"]
