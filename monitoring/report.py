"""The per-run report: ``report.json`` (everything), ``report.html`` (the decision and figures for people,
written by :mod:`faceops.reports` with ``features.png`` embedded) and that PNG of the feature distributions,
window against reference; Evidently's own page is ``drift.html`` beside them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from faceops.reports.writer import render

__all__ = ["plot_features", "write_report"]


def _rate(rate: dict[str, Any] | None) -> str:
    if not rate or rate.get("value") is None:
        return "n/a"
    return f"{rate['value']:.4f} [{rate['low']:.4f}, {rate['high']:.4f}] ({rate['k']}/{rate['n']})"


def _drift_row(feature: dict[str, Any]) -> dict[str, Any]:
    return {
        "feature": feature["feature"],
        "drift": {True: "DRIFT", False: "ok", None: "-"}[feature["drifted"]],
        "score": "" if feature["score"] is None else f"{feature['score']:.4g}",
        "method": feature["method"] or "",
        "threshold": feature["threshold"] or "",
        "reference mean": feature["reference_mean"],
        "window mean": feature["current_mean"],
        "window n": feature["current_n"],
        "note": feature["note"],
    }


def _page(report: dict[str, Any], out: Path) -> str:
    """The page (template ``monitor.html`` of :mod:`faceops.reports`); ``features.png`` is embedded if made."""
    perf = report.get("performance") or {}
    ref_perf = (report.get("reference") or {}).get("performance") or {}
    drift = report.get("drift") or {}
    features = out / "features.png"
    return render(
        "monitor.html",
        decision=report["decision"],
        window={k: v for k, v in report["window"].items() if k != "rejected_examples"},
        performance={
            "accuracy": _rate(perf.get("accuracy")),
            "reference accuracy": _rate(ref_perf.get("accuracy")),
            "FAR": _rate(perf.get("far")),
            "reference FAR": _rate(ref_perf.get("far")),
            "FRR": _rate(perf.get("frr")),
            "reference FRR": _rate(ref_perf.get("frr")),
            "misidentification": _rate(perf.get("misidentification_rate")),
        },
        drift_share=drift.get("share"),
        drift=[_drift_row(f) for f in drift.get("features", [])],
        features_png=features if features.is_file() else None,
        files=report.get("files", []),
        everything=json.dumps(report, indent=2, default=str),
    )


def plot_features(reference: dict[str, np.ndarray], current: dict[str, np.ndarray], path: Path) -> Path | None:
    """Histograms of each feature, reference against window (nothing written without window data)."""
    names = [n for n in reference if np.isfinite(np.asarray(current.get(n, []), dtype=float)).any()]
    if not names:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        ref = np.asarray(reference[name], dtype=float)
        cur = np.asarray(current[name], dtype=float)
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        both = np.concatenate([ref, cur])
        bins = np.linspace(both.min(), both.max() + 1e-9, 25)
        ax.hist(ref, bins=bins, alpha=0.5, density=True, label=f"reference (n={len(ref)})")
        ax.hist(cur, bins=bins, alpha=0.5, density=True, label=f"window (n={len(cur)})")
        ax.set_title(name)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """Write ``report.json`` and ``report.html`` into ``out``; returns every file of the run's folder."""
    out.mkdir(parents=True, exist_ok=True)
    report["files"] = sorted({p.name for p in out.iterdir()} | {"report.json", "report.html"})
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "report.html").write_text(_page(report, out), encoding="utf-8")
    return sorted(p for p in out.iterdir() if p.is_file())
