"""The one HTML writer: jinja2 templates in ``templates/`` (autoescaped), one stylesheet, embedded images.

Every page extends ``base.html``, which inlines ``style.css``; ``macros.html`` holds the table and image blocks.
Images are embedded as base64 data URIs, so each page is one self-contained file that opens from disk or as an
MLflow artifact. The template environment is built on first use, not at import.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment

__all__ = ["cell", "data_uri", "render", "write"]

# Signatures of the image formats a page may embed (the plots are PNG).
_IMAGE_TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif"}


def cell(value: Any, digits: int | None = 4) -> Any:
    """A table cell's text: floats to ``digits`` significant digits (``None``: as ``str``), markup as is."""
    if hasattr(value, "__html__"):
        return value  # already safe HTML (markupsafe.Markup): the caller vouches for it
    if digits is not None and isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def data_uri(path: str | Path) -> str:
    """The image file at ``path`` as a ``data:`` URI (base64), to embed in a page.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a PNG, JPEG or GIF image.
    """
    data = Path(path).read_bytes()
    mime = next((m for sig, m in _IMAGE_TYPES.items() if data.startswith(sig)), None)
    if mime is None:
        raise ValueError(f"{path}: not a PNG, JPEG or GIF image, cannot embed it in a report")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _is_records(value: Any) -> bool:
    """A non-empty list or tuple of mappings: a table with one row each."""
    return isinstance(value, list | tuple) and bool(value) and isinstance(value[0], Mapping)


@functools.cache
def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("faceops.reports", "templates"),
        autoescape=True,  # every page is HTML and shows user-supplied text (paths, names, reasons)
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters.update(cell=cell, data_uri=data_uri)
    env.tests["records"] = _is_records
    return env


def render(template: str, **context: Any) -> str:
    """The page ``template`` (a file in ``templates/``) rendered with ``context``."""
    return _environment().get_template(template).render(**context)


def write(path: str | Path, template: str, **context: Any) -> Path:
    """Render ``template`` with ``context`` into the file ``path`` (UTF-8; parent folders are made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(template, **context), encoding="utf-8")
    return path
