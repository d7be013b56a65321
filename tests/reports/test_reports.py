"""The one HTML writer: escaping of user text, one inlined stylesheet for every page, tables, embedded images."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

import cv2
import numpy as np
import pytest
from faceops.monitoring.report import write_report
from markupsafe import Markup

from faceops.data.report_html import render_html
from faceops.reports import data_uri, write_page

ROOT = Path(__file__).resolve().parents[2]
STYLESHEET = files("faceops.reports").joinpath("templates/style.css").read_text(encoding="utf-8").strip()
HOSTILE = '<script>alert("x")</script> & <b>'


class _Page(HTMLParser):
    """What a browser would see: the tables' cells, the images' sources, the style blocks, the text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[dict[str, str | None]] = []
        self.styles: list[str] = []
        self.scripts = 0
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._in_style = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs))
        elif tag == "style":
            self._in_style = True
            self.styles.append("")
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles[-1] += data
        elif self._cell is not None:
            self._cell.append(data)
        else:
            self.text.append(data)


def _png(path: Path, shade: int) -> Path:
    image = np.full((24, 32, 3), shade, np.uint8)
    cv2.circle(image, (16, 12), 8, (0, 0, 255), -1)
    assert cv2.imwrite(str(path), image)
    return path


def test_write_page_escapes_text_and_embeds_tables_and_images(tmp_path: Path) -> None:
    plot = _png(tmp_path / "roc_open_set.png", 90)
    path = write_page(
        tmp_path / "out" / "report.html",
        HOSTILE,
        {
            "Metrics": {"accuracy": 0.987654321, HOSTILE: HOSTILE},
            "Epochs": [{"epoch": 1, "loss": 1.23456789}, {"epoch": 2, "loss": 0.5}],
            "Summary": f"2 checks\nfailed: {HOSTILE}",
            "Trusted": Markup("<em>kept</em>"),
        },
        [plot],
    )
    html = path.read_text(encoding="utf-8")
    page = _Page(html)
    assert page.scripts == 0 and "<b>" not in html and "<em>kept</em>" in html
    assert html.count("&lt;script&gt;") == 5  # title, heading, a key, its value, the summary
    assert page.tables[0] == [["accuracy", "0.9877"], [HOSTILE, HOSTILE]]
    assert page.tables[1] == [["epoch", "loss"], ["1", "1.235"], ["2", "0.5"]]
    assert f"2 checks\nfailed: {HOSTILE}" in "".join(page.text)  # line breaks kept (pre-line)
    assert [s.strip() for s in page.styles] == [STYLESHEET]
    (image,) = page.images
    assert image["alt"] == "roc_open_set.png" and "roc open set" in page.text
    prefix = "data:image/png;base64,"
    assert image["src"] is not None and image["src"].startswith(prefix)
    assert base64.b64decode(image["src"][len(prefix) :]) == plot.read_bytes()


def test_every_page_inlines_the_one_stylesheet(tmp_path: Path) -> None:
    plots = {name: _png(tmp_path / f"{name}.png", 40 * k) for k, name in enumerate(("identities", "images", "quality"))}
    d = {"mean": 1.0, "median": 1.0}
    summary = {
        "data_root": HOSTILE,
        "images": 3,
        "unreadable": 0,
        "splits": {"train": 3},
        "identities_per_split": {"train": 2},
        "images_per_identity": {"min": 1, "median": 1.5, "max": 2},
        "formats": {"JPEG": 3},
        "sizes": [{"width": 250, "height": 250, "images": 3}],
        "brightness": d,
        "contrast": d,
        "blur": d,
        "duplicates": {"images": 0, "groups": 0, "examples": []},
        "concentration": {"identities": 2, "top10_share": 1.0, "singletons": 1, "gini": 0.17},
        "top_identities": {HOSTILE: 2, "b": 1},
    }
    eda = _Page(render_html(summary, plots))
    assert eda.scripts == 0 and len(eda.images) == 3 and "none" in eda.text  # no duplicates
    assert [HOSTILE, "2"] in eda.tables[1] and HOSTILE in eda.text
    with pytest.raises(ValueError, match="quality"):
        render_html(summary, {k: v for k, v in plots.items() if k != "quality"})

    run = tmp_path / "monitor"
    run.mkdir()
    _png(run / "features.png", 200)
    report = {
        "decision": {"action": "retrain", "reasons": [HOSTILE]},
        "window": {"start": 1733061234.5, "end": 1733061834.5},
        "drift": {"share": 0.5, "features": []},
    }
    write_report(report, run)
    monitor = _Page((run / "report.html").read_text(encoding="utf-8"))
    assert monitor.scripts == 0 and HOSTILE in monitor.text
    assert monitor.tables[0] == [["start", "1733061234.5"], ["end", "1733061834.5"]]  # not rounded
    assert base64.b64decode(monitor.images[0]["src"].split(",", 1)[1]) == (run / "features.png").read_bytes()

    for page in (eda, monitor):
        assert [s.strip() for s in page.styles] == [STYLESHEET]


def test_no_page_is_built_outside_the_templates() -> None:
    """Python sources hold no copy of the stylesheet or a page skeleton: pages come from the templates."""
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("src", "serving", "monitoring", "components", "pipelines")
        for path in (ROOT / folder).rglob("*.py")
        if re.search(r"<style|<table|<h1|border-collapse", path.read_text(encoding="utf-8"), re.IGNORECASE)
    ]
    assert offenders == []


def test_data_uri_refuses_what_is_not_an_image(tmp_path: Path) -> None:
    text = tmp_path / "plot.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="not a PNG"):
        data_uri(text)
    with pytest.raises(FileNotFoundError):
        data_uri(tmp_path / "missing.png")


def test_templates_load_on_first_use_not_at_import() -> None:
    code = "import sys, faceops.reports, faceops.data.report_html; print('jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
