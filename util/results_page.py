"""The test results page (``RESULTS_DIR/NAME/PHASE_EPOCH/index.html``) built from its image folders.

One row per translated image: the input, its translation and a real target-domain image for
comparison, each from ``images/<column>/<row name>.png`` when that file exists. When the folder
holds a ``score.json`` with a ``summary`` (a list of lines, e.g. from ``python -m
datasets.toy_score``), the lines are shown above the rows. test.py and the score command both
write the page through :func:`write_results_page`, so they always agree on its layout.
"""
from __future__ import annotations

import json
from pathlib import Path

from dominate.tags import li, ul

from util.html import HTML

SCORE_JSON = "score.json"
# (image folder, column caption), left to right.
COLUMNS = (("real_A", "input"), ("fake_B", "translation"), ("real_B", "real B, for comparison"))


def read_score(out_dir: str | Path) -> dict | None:
    """The folder's score.json, or None when there is none."""
    try:
        return json.loads((Path(out_dir) / SCORE_JSON).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def write_results_page(out_dir: str | Path, *, width: int = 256) -> Path:
    """(Re)write ``out_dir/index.html``: the score (if any) on top, then one row per image in
    ``out_dir/images/fake_B``, sorted by name. `width` is each image's width in CSS pixels.
    Returns the page's path; FileNotFoundError when there is no fake_B folder."""
    out_dir = Path(out_dir)
    images = out_dir / "images"
    if not (images / "fake_B").is_dir():
        raise FileNotFoundError(f"{images / 'fake_B'} not found: pass a folder written by test.py")
    fakes = sorted((images / "fake_B").glob("*.png"))
    title = f"{out_dir.parent.name}: {out_dir.name}"
    page = HTML(out_dir, title)
    score = read_score(out_dir)
    if score and score.get("summary"):
        page.add_header("translation score")
        with page.doc:
            with ul(id="score"):
                for line in score["summary"]:
                    li(line)
    shown = [(folder, caption) for folder, caption in COLUMNS if (images / folder).is_dir()]
    page.add_header(f"{title}, {len(fakes)} images: " + " | ".join(caption for _, caption in shown))
    for fake in fakes:
        cells = [(f"images/{folder}/{fake.name}", f"{fake.stem} {caption}") for folder, caption in shown
                 if (images / folder / fake.name).is_file()]
        srcs = [src for src, _ in cells]
        page.add_images(srcs, [caption for _, caption in cells], srcs, width=width)
    page.save()
    return out_dir / "index.html"
