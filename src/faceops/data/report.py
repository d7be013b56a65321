"""``faceops data report``: an exploratory data analysis of a data version as one self-contained HTML file.

Sections: overview, identity distribution (the long tail), image sizes and formats, brightness / contrast /
blur, faces (detection rate, face size, pose proxy), duplicates, and bias (:mod:`faceops.data.bias`). Plots
are PNG files in ``<out>/plots/`` and are embedded (base64) in ``<out>/report.html``; the numbers are in
``<out>/summary.json`` and the per-image facts in ``<out>/images.csv``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from faceops.data import report_plots as plots
from faceops.data.bias import concentration, skin_tone_table
from faceops.data.facts import face_facts, image_facts, read_stats, sample_paths
from faceops.data.manifest import read_manifest
from faceops.data.report_html import render_html

__all__ = ["EdaReport", "build_report", "summarize"]


@dataclass
class EdaReport:
    """Where the report went and what it found."""

    html: Path
    summary: dict[str, Any]
    plots: dict[str, Path]


def _describe(series: pd.Series) -> dict[str, float]:
    values = series.dropna().astype(float)
    if values.empty:
        return {}
    q = values.quantile([0.05, 0.5, 0.95])
    return {
        "mean": round(float(values.mean()), 3),
        "p05": round(float(q[0.05]), 3),
        "median": round(float(q[0.5]), 3),
        "p95": round(float(q[0.95]), 3),
    }


def summarize(facts: pd.DataFrame, faces: pd.DataFrame | None) -> dict[str, Any]:
    """The report's numbers from per-image facts (and face facts, when any)."""
    counts = facts.groupby("identity")["path"].count()
    dups = facts[facts["sha256"].notna() & facts.duplicated("sha256", keep=False)]
    summary: dict[str, Any] = {
        "images": len(facts),
        "unreadable": int((~facts["readable"]).sum()),
        "splits": facts["split"].value_counts().to_dict(),
        "identities_per_split": facts.groupby("split")["identity"].nunique().to_dict(),
        "images_per_identity": {
            "min": int(counts.min()),
            "median": float(counts.median()),
            "max": int(counts.max()),
        },
        "formats": facts["format"].fillna("unreadable").value_counts().to_dict(),
        "sizes": facts.dropna(subset=["width"])
        .groupby(["width", "height"])
        .size()
        .sort_values(ascending=False)
        .head(10)
        .rename("images")
        .reset_index()
        .to_dict("records"),
        "brightness": _describe(facts["brightness"]),
        "contrast": _describe(facts["contrast"]),
        "blur": _describe(facts["blur"]),
        "duplicates": {
            "images": len(dups),
            "groups": int(dups["sha256"].nunique()),
            "examples": dups.sort_values("sha256")[["sha256", "path", "identity", "split"]]
            .head(20)
            .to_dict("records"),
        },
        "concentration": concentration(counts),
        "top_identities": counts.sort_values(ascending=False).head(10).to_dict(),
    }
    if faces is not None and not faces.empty:
        looked = faces["face_found"].notna()
        summary["faces"] = {
            "sampled": int(looked.sum()),
            "detection_rate": round(float(faces.loc[looked, "face_found"].mean()), 4)
            if looked.any()
            else None,
            "no_face_examples": faces.loc[faces["face_found"] == 0, "path"].head(10).tolist(),
            **{
                k: _describe(faces[k])
                for k in ("face_size", "face_rel_size", "yaw", "roll", "probability")
                if k in faces
            },
        }
        if "yaw" in faces:
            yaw = faces["yaw"].dropna().abs()
            summary["faces"]["near_frontal_share"] = round(float((yaw < 0.1).mean()), 4) if len(yaw) else None
        if "ita" in faces:
            tones = faces.merge(facts[["path", "identity"]], on="path", how="left")
            summary["skin_tone"] = skin_tone_table(tones).to_dict("records")
    return summary


def build_report(
    data_root: str | Path,
    out_dir: str | Path,
    *,
    stats: str | Path | None = None,
    face_sample: int = 64,
    seed: int = 0,
    detector: object | None = None,
    progress: Callable[[int], object] | None = None,
) -> EdaReport:
    """Write the EDA report of the data version in ``data_root`` to ``out_dir``.

    Args:
        data_root: the data folder (with ``manifest.csv``).
        out_dir: where ``report.html``, ``plots/``, ``summary.json`` and ``images.csv`` go.
        stats: precomputed per-image statistics to use instead of running the detector.
        face_sample: images run through the face detector when no statistics are given (0: no face section).
        seed: picks the sample.
        detector: a :class:`faceops.face.detection.FaceDetector` to reuse.
        progress: called with the number of images processed.
    """
    root, out = Path(data_root), Path(out_dir)
    rows = read_manifest(root)
    facts = image_facts(root, rows, progress)
    if stats is not None:
        faces: pd.DataFrame | None = read_stats(stats, root)
    elif face_sample > 0:
        readable = facts.loc[facts["readable"], "path"].tolist()
        faces = face_facts(root, sample_paths(readable, face_sample, seed), detector)
    else:
        faces = None
    summary = summarize(facts, faces)
    summary["data_root"] = str(root.resolve())
    summary["face_source"] = str(stats) if stats is not None else f"detector on a sample of {face_sample}"
    out.mkdir(parents=True, exist_ok=True)
    figures = plots.make_plots(facts, faces, out / "plots")
    table = facts if faces is None else facts.merge(faces, on="path", how="left", suffixes=("", "_face"))
    table.to_csv(out / "images.csv", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    html = out / "report.html"
    html.write_text(render_html(summary, figures), encoding="utf-8")
    return EdaReport(html, summary, figures)
