"""The per-run report: ``report.json`` (everything), ``report.html`` (the decision and figures for people)
and a
PNG of the feature distributions, window against reference; Evidently's own page is ``drift.html`` beside
them."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_features", "write_report"]


def _rate(rate: dict[str, Any] | None) -> str:
    if not rate or rate.get("value") is None:
        return "n/a"
    return f"{rate['value']:.4f} [{rate['low']:.4f}, {rate['high']:.4f}] ({rate['k']}/{rate['n']})"


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in pairs)


def _page(report: dict[str, Any]) -> str:
    decision = report["decision"]
    perf = report.get("performance") or {}
    ref_perf = report.get("reference", {}).get("performance", {})
    drift = report.get("drift") or {}
    features = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                f["feature"],
                {True: "DRIFT", False: "ok", None: "-"}[f["drifted"]],
                "" if f["score"] is None else f"{f['score']:.4g}",
                f["method"] or "",
                f["threshold"] or "",
                f["reference_mean"],
                f["current_mean"],
                f["current_n"],
                f["note"],
            )
        )
        + "</tr>"
        for f in drift.get("features", [])
    )
    links = " ".join(f'<a href="{html.escape(n)}">{html.escape(n)}</a>' for n in report.get("files", []))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>FaceOps monitor {
        decision["action"]
    }</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px;text-align:left}}.a{{font-size:1.4em;font-weight:bold}}</style></head><body>
<h1>FaceOps monitor</h1><p class="a">{html.escape(decision["action"])}</p>
<ul>{"".join(f"<li>{html.escape(r)}</li>" for r in decision["reasons"])}</ul>
<h2>Window</h2><table>{
        _rows([(k, str(v)) for k, v in report["window"].items() if k != "rejected_examples"])
    }</table>
<h2>Accuracy / FAR / FRR (95% Wilson intervals)</h2><table>{
        _rows(
            [
                ("accuracy", _rate(perf.get("accuracy"))),
                ("reference accuracy", _rate(ref_perf.get("accuracy"))),
                ("FAR", _rate(perf.get("far"))),
                ("reference FAR", _rate(ref_perf.get("far"))),
                ("FRR", _rate(perf.get("frr"))),
                ("reference FRR", _rate(ref_perf.get("frr"))),
                ("misidentification", _rate(perf.get("misidentification_rate"))),
            ]
        )
    }</table>
<h2>Drift (share {
        drift.get("share")
    })</h2><table><tr><th>feature</th><th>drift</th><th>score</th><th>method</th>
<th>threshold</th><th>reference mean</th><th>window mean</th><th>window n</th><th>note</th></tr>{
        features
    }</table>
<p><img src="features.png" alt="feature distributions" style="max-width:100%"></p>
<h2>Files</h2><p>{links}</p><h2>Everything</h2><pre>{
        html.escape(json.dumps(report, indent=2, default=str))
    }</pre>
</body></html>"""


def plot_features(
    reference: dict[str, np.ndarray], current: dict[str, np.ndarray], path: Path
) -> Path | None:
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
    (out / "report.html").write_text(_page(report))
    return sorted(p for p in out.iterdir() if p.is_file())
