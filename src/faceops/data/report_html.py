"""The EDA report's HTML: the tables of :func:`faceops.data.report.summarize`'s summary, laid out by the
report writer's ``eda.html`` template (one self-contained page, plots embedded as base64 PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faceops.reports.writer import render

__all__ = ["render_html"]

_PLOTS = ("identities", "images", "quality")  # the plots every report has (faces, skin tone: when measured)


def render_html(summary: dict[str, Any], plots: dict[str, Path]) -> str:
    """The report page for :func:`faceops.data.report.summarize`'s ``summary`` and the plot files.

    Raises:
        ValueError: ``plots`` lacks one of the plots every report has.
    """
    missing = [name for name in _PLOTS if name not in plots]
    if missing:
        raise ValueError(f"data report: no {', '.join(missing)} plot (have: {', '.join(plots) or 'none'})")
    conc = summary["concentration"]
    faces = summary.get("faces")
    return render(
        "eda.html",
        title="FaceOps data report",
        data_root=summary["data_root"],
        plots=plots,
        overview={
            "images": summary["images"],
            "unreadable images": summary["unreadable"],
            "identities": conc.get("identities"),
            "images per split": summary["splits"],
            "identities per split": summary["identities_per_split"],
            "images per identity": summary["images_per_identity"],
        },
        top10_share=f"{conc.get('top10_share', 0):.1%}",
        singletons=conc.get("singletons", 0),
        top_identities=summary["top_identities"],
        formats=summary["formats"],
        sizes=summary["sizes"],
        quality={k: summary[k] for k in ("brightness", "contrast", "blur")},
        faces={k: v for k, v in faces.items() if k != "no_face_examples"} if faces else None,
        face_source=summary.get("face_source", ""),
        no_face_examples=(faces or {}).get("no_face_examples", []),
        duplicates=summary["duplicates"],
        bias={
            "Gini coefficient of images over identities": conc.get("gini"),
            "effective number of identities (exp entropy)": conc.get("effective_identities"),
            "identities": conc.get("identities"),
            "share of images of the top 1% identities": conc.get("top1pct_share"),
            "near-frontal share (|yaw proxy| < 0.1)": (faces or {}).get("near_frontal_share"),
        },
        skin_tone=summary.get("skin_tone"),
    )
