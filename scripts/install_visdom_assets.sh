#!/usr/bin/env bash
# Make visdom 0.2.4's server start offline: at first start it downloads ~20 JS/CSS/font
# files and MathJax from CDNs, and crashes before listening when it cannot. The same
# files are published on npm; this copies them to the names visdom/server/build.py uses
# and writes static/version.built last, so visdom skips its download step.
#
# Only the live visdom view needs them (train.py --display_id N > 0 with a local visdom
# server); online, visdom fetches them itself at its first start.
#
# Usage: scripts/install_visdom_assets.sh [PYTHON]   (default: $PYTHON, else .venv/bin/python)
# Idempotent: a second run does nothing and says so. Needs npm unless the packages are
# already in .cache/visdom-assets. Exit status 3: npm is needed and not found (nothing changed).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${1:-${PYTHON:-$repo/.venv/bin/python}}"
cache="$repo/.cache/visdom-assets"

# find_spec locates the package without importing it (importing pulls in numpy etc.).
visdom_dir="$("$python" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("visdom").origin))')"
version="$(tr -d '[:space:]' < "$visdom_dir/VERSION")"
static="$visdom_dir/static"

# npm package | file inside the package | destination under visdom/static (build.py's names)
assets="
jquery@3.1.1|dist/jquery.min.js|js/jquery.min.js
bootstrap@3.3.7|dist/js/bootstrap.min.js|js/bootstrap.min.js
react@16.2.0|umd/react.production.min.js|js/react-react.min.js
react-dom@16.2.0|umd/react-dom.production.min.js|js/react-dom.min.js
react-modal@3.1.10|dist/react-modal.min.js|js/react-modal.min.js
plotly.js-dist-min@2.11.1|plotly.min.js|js/plotly-plotly.min.js
sjcl@1.0.7|sjcl.js|js/sjcl.js
layout-bin-packer@1.4.0|dist/layout-bin-packer.js.map|js/layout-bin-packer.js.map
layout-bin-packer@1.4.0|dist/layout-bin-packer.js|js/layout_bin_packer.js
d3@3.5.17|d3.min.js|js/d3.v3.min.js
d3-selection-multi@1.0.1|build/d3-selection-multi.js|js/d3-selection-multi.v1.js
save-svg-as-png@1.4.17|lib/saveSvgAsPng.js|js/saveSvgAsPng.js
react-resizable@1.4.6|css/styles.css|css/react-resizable-styles.css
react-grid-layout@0.16.3|css/styles.css|css/react-grid-layout-styles.css
bootstrap@3.3.7|dist/css/bootstrap.min.css|css/bootstrap.min.css
classnames@2.2.5|index.js|fonts/classnames
bootstrap@3.3.7|dist/fonts/glyphicons-halflings-regular.eot|fonts/glyphicons-halflings-regular.eot
bootstrap@3.3.7|dist/fonts/glyphicons-halflings-regular.woff2|fonts/glyphicons-halflings-regular.woff2
bootstrap@3.3.7|dist/fonts/glyphicons-halflings-regular.woff|fonts/glyphicons-halflings-regular.woff
bootstrap@3.3.7|dist/fonts/glyphicons-halflings-regular.ttf|fonts/glyphicons-halflings-regular.ttf
bootstrap@3.3.7|dist/fonts/glyphicons-halflings-regular.svg|fonts/glyphicons-halflings-regular.svg#glyphicons_halflingsregular
mathjax@2.7.5|MathJax.js|js/mathjax/2.7.5/MathJax.js
mathjax@2.7.5|config/Safe.js|js/mathjax/2.7.5/config/Safe.js
mathjax@2.7.5|config/TeX-AMS-MML_HTMLorMML.js|js/mathjax/2.7.5/config/TeX-AMS-MML_HTMLorMML.js
mathjax@2.7.5|extensions/Safe.js|js/mathjax/2.7.5/extensions/Safe.js
mathjax@2.7.5|jax/output/SVG/fonts/TeX/fontdata.js|js/mathjax/2.7.5/jax/output/SVG/fonts/TeX/fontdata.js
mathjax@2.7.5|jax/output/SVG/jax.js|js/mathjax/2.7.5/jax/output/SVG/jax.js
mathjax@2.7.5|jax/output/SVG/fonts/TeX/Size1/Regular/Main.js|js/mathjax/2.7.5/jax/output/SVG/fonts/TeX/Size1/Regular/Main.js
mathjax@2.7.5|jax/output/SVG/config.js|js/mathjax/2.7.5/jax/output/SVG/config.js
"
# The index page links visdom/user/style.css, which the package lacks.
user_css="$visdom_dir/user/style.css"

installed() {
    [[ -f "$static/version.built" && "$(tr -d '[:space:]' < "$static/version.built")" == "$version" ]] || return 1
    [[ -f "$user_css" ]] || return 1
    local pkg member dest
    while IFS='|' read -r pkg member dest; do
        [[ -z "$pkg" || -s "$static/$dest" ]] || return 1
    done <<< "$assets"
}

if installed; then
    echo "visdom $version assets already installed in $static; nothing to do."
    exit 0
fi

mkdir -p "$cache"
packages="$(cut -d'|' -f1 <<< "$assets" | grep -v '^$' | sort -u)"
missing=()
for pkg in $packages; do
    [[ -f "$cache/$(tr '@' '-' <<< "$pkg").tgz" ]] || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
    if ! command -v npm > /dev/null; then
        echo "error: npm not found; install Node.js/npm (e.g. apt-get install npm), then run: bash $0" >&2
        exit 3
    fi
    echo "Fetching ${#missing[@]} npm packages into $cache"
    (cd "$cache" && npm pack --silent "${missing[@]}" > /dev/null)
fi

# A stale version.built would make visdom trust a half-copied tree; it is rewritten last.
rm -f "$static/version.built"
while IFS='|' read -r pkg member dest; do
    [[ -n "$pkg" ]] || continue
    mkdir -p "$(dirname "$static/$dest")"
    tar --warning=no-unknown-keyword -xzOf "$cache/$(tr '@' '-' <<< "$pkg").tgz" "package/$member" > "$static/$dest.tmp"
    mv "$static/$dest.tmp" "$static/$dest"
done <<< "$assets"

mkdir -p "$(dirname "$user_css")"
touch "$user_css"
echo "$version" > "$static/version.built"
echo "Installed visdom $version assets into $static"
