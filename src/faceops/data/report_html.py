"""The EDA report's HTML: one self-contained page (plots embedded as base64 PNG), opened as a file."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

__all__ = ["render_html"]

_STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
img{max-width:100%}.note{color:#555;font-size:.92em}h2{border-bottom:1px solid #ddd;margin-top:1.6em}"""

_BIAS_NOTE = """<p class="note">The data has no demographic labels and FaceOps does not guess gender, age or
ethnicity: such guesses would be unreliable and would turn a dataset audit into a classification of people.
What can be measured is shown above: how concentrated the images are over identities (a model learns the most
photographed people best), the spread of pose and capture conditions, and a skin-tone <em>appearance</em>
proxy (the Individual Typology Angle of a cheek patch, Chardon et al. 1991, as in Merler et al. 2019
"Diversity in Faces"). ITA depends on lighting and white balance and is only meaningful as a distribution
over many images. For LFW specifically, published audits with human annotations (e.g. Han &amp; Jain 2014;
Kärkkäinen &amp; Joo 2021, FairFace) report a strong skew towards white, male, adult public figures
photographed by the press: accuracy measured on LFW says little about other groups. Evaluate per group on a
labelled, balanced set before any deployment decision.</p>"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(rows: list[dict[str, Any]] | dict[str, Any], headers: tuple[str, str] = ("", "")) -> str:
    if isinstance(rows, dict):
        body = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items()
        )
        head = f"<tr><th>{headers[0]}</th><th>{headers[1]}</th></tr>" if any(headers) else ""
        return f"<table>{head}{body}</table>"
    if not rows:
        return "<p>none</p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(summary: dict[str, Any], plots: dict[str, Path]) -> str:
    """The report page for :func:`faceops.data.report.summarize`'s ``summary`` and the plot files."""
    conc = summary["concentration"]
    faces = summary.get("faces")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>FaceOps data report</title>",
        f"<style>{_STYLE}</style></head><body><h1>FaceOps data report</h1>",
        f"<p class='note'>{html.escape(summary['data_root'])}</p>",
        "<h2>Overview</h2>",
        _table(
            {
                "images": summary["images"],
                "unreadable images": summary["unreadable"],
                "identities": conc.get("identities"),
                "images per split": summary["splits"],
                "identities per split": summary["identities_per_split"],
                "images per identity": summary["images_per_identity"],
            }
        ),
        "<h2>Identity distribution</h2>",
        _img(plots["identities"], "identity distribution"),
        f"<p>The 10 most photographed identities hold {conc.get('top10_share', 0):.1%} of the images; "
        f"{conc.get('singletons', 0)} identities have a single image.</p>",
        _table(summary["top_identities"], ("identity", "images")),
        "<h2>Image sizes and formats</h2>",
        _img(plots["images"], "sizes, formats, splits"),
        _table(summary["formats"], ("format", "images")),
        _table(summary["sizes"]),
        "<h2>Brightness, contrast, blur</h2>",
        _img(plots["quality"], "image quality"),
        _table({k: summary[k] for k in ("brightness", "contrast", "blur")}, ("measure", "distribution")),
        "<h2>Faces</h2>",
    ]
    if faces:
        parts += [f"<p>Source: {html.escape(summary['face_source'])}.</p>"]
        if "faces" in plots:
            parts.append(_img(plots["faces"], "faces"))
        parts.append(
            _table({k: v for k, v in faces.items() if k != "no_face_examples"}, ("measure", "value"))
        )
        parts.append(
            f"<p>Images without a detected face (first 10): "
            f"{html.escape(', '.join(faces['no_face_examples']) or 'none')}</p>"
        )
    else:
        parts.append("<p>No face statistics (face sample 0 and no statistics file).</p>")
    dups = summary["duplicates"]
    parts += [
        "<h2>Duplicates</h2>",
        f"<p>{dups['images']} images in {dups['groups']} groups of byte-identical files.</p>",
        _table(dups["examples"]),
        "<h2>Bias: who is in the data, and how skewed it is</h2>",
        _table(
            {
                "Gini coefficient of images over identities": conc.get("gini"),
                "effective number of identities (exp entropy)": conc.get("effective_identities"),
                "identities": conc.get("identities"),
                "share of images of the top 1% identities": conc.get("top1pct_share"),
                "near-frontal share (|yaw proxy| < 0.1)": (faces or {}).get("near_frontal_share"),
            },
            ("measure", "value"),
        ),
    ]
    if summary.get("skin_tone"):
        parts.append("<h3>Skin tone proxy (ITA categories)</h3>")
        if "skin_tone" in plots:
            parts.append(_img(plots["skin_tone"], "skin tone proxy"))
        parts.append(_table(summary["skin_tone"]))
    parts += [_BIAS_NOTE, "</body></html>"]
    return "\n".join(parts)
