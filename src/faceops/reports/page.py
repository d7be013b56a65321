"""A pipeline step's report: one self-contained HTML page of tables, text and embedded PNG plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faceops.reports.writer import write

__all__ = ["write_page"]


def write_page(path: str | Path, title: str, sections: dict[str, Any], images: Sequence[Path] = ()) -> Path:
    """Write ``sections`` and the PNG ``images`` as one HTML file (template ``page.html``).

    Args:
        path: the HTML file to write.
        title: the page's title, after "FaceOps: ".
        sections: heading -> content, in order: a dict (key / value table, floats to 4 significant digits), a
            list of dicts (one row each) or anything else as text (escaped; line breaks kept). Pass
            :class:`markupsafe.Markup` for HTML that is already safe.
        images: PNG files, each embedded under a heading made from its name.

    Returns:
        ``path``.
    """
    figures = [{"path": Path(image), "alt": Path(image).name, "heading": Path(image).stem.replace("_", " ")} for image in images]
    return write(path, "page.html", title=title, sections=sections, figures=figures)
