"""One self-contained HTML page (tables, PNG plots embedded as base64): a pipeline step's report."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_page"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}"
    "img{max-width:100%}h2{border-bottom:1px solid #ddd;margin-top:1.4em}"
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _section(value: Any) -> str:
    if isinstance(value, dict):
        rows = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{_cell(v)}</td></tr>" for k, v in value.items()
        )
        return f"<table>{rows}</table>"
    if isinstance(value, list) and value and isinstance(value[0], dict):
        cols = list(value[0])
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in value)
        return f"<table><tr>{head}</tr>{body}</table>"
    if isinstance(value, str) and value.count("<br>"):
        return f"<p>{value}</p>"  # pre-formatted by the caller
    return f"<p>{_cell(value)}</p>"


def write_page(path: str | Path, title: str, sections: dict[str, Any], images: Sequence[Path] = ()) -> Path:
    """Write ``sections`` (heading -> dict, list of dicts or text) and the PNG ``images`` as one HTML file."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>FaceOps: {html.escape(title)}</h1>",
    ]
    for heading, value in sections.items():
        parts += [f"<h2>{html.escape(heading)}</h2>", _section(value)]
    for image in images:
        data = base64.b64encode(Path(image).read_bytes()).decode()
        parts += [
            f"<h2>{html.escape(Path(image).stem.replace('_', ' '))}</h2>",
            f"<img alt='{html.escape(Path(image).name)}' src='data:image/png;base64,{data}'>",
        ]
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
    return path
