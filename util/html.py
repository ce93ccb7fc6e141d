"""Static HTML result pages (CUT's ``util.html.HTML`` API, built with dominate)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dominate
from dominate.tags import a, br, h3, img, meta, p, table, td, tr


class HTML:
    """A page of image rows under ``web_dir``; images live in ``web_dir/images``."""

    def __init__(self, web_dir: str | Path, title: str, refresh: int = 0) -> None:
        self.web_dir = Path(web_dir)
        self.img_dir = self.web_dir / "images"
        self.img_dir.mkdir(parents=True, exist_ok=True)
        self.doc = dominate.document(title=title)
        if refresh > 0:
            with self.doc.head:
                meta(http_equiv="refresh", content=str(refresh))

    def get_image_dir(self) -> Path:
        return self.img_dir

    def add_header(self, text: str) -> None:
        with self.doc:
            h3(text)

    def add_images(self, ims: list[str], txts: list[str], links: list[str], width: int = 256) -> None:
        """One table row: each image (path relative to ``web_dir``) links to ``links[i]``; images
        shrink below ``width`` px to fit a narrower window, so the page never scrolls sideways."""
        fit = f"calc((100vw - {40 + 16 * len(ims)}px) / {max(len(ims), 1)})"  # body margin, cell borders/padding
        row_table = table(border=1, style="table-layout: fixed;")
        self.doc.add(row_table)
        with row_table:
            with tr():
                for im, txt, link in zip(ims, txts, links, strict=True):
                    with td(style="word-wrap: break-word;", halign="center", valign="top"):
                        with a(href=link):
                            img(style=f"width:{width}px; max-width:{fit}", src=im)
                        br()
                        p(txt)

    def save(self) -> None:
        """Write ``web_dir/index.html`` atomically so a reader never sees half a page."""
        fd, tmp = tempfile.mkstemp(dir=self.web_dir, prefix=".index.", suffix=".html")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.doc.render())
            os.replace(tmp, self.web_dir / "index.html")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
