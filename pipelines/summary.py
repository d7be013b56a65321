"""What a local pipeline run did, in words: the data version, the steps, the model versions, where to look."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["render", "summarize"]

STEPS = (
    "data-version",
    "validate",
    "plan-shards",
    "preprocess-shard",
    "preprocess-merge",
    "train",
    "evaluate",
    "robustness",
    "register-and-gate",
    "promote",
    "optimize",
    "record-status",
)


def summarize(result: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """Add the data version, the newest and the champion model versions (with metrics) to a run result."""
    from faceops import registry
    from faceops.steps.data import data_version_info

    uri = arguments.get("tracking_uri") or None
    if result.get("pipeline") == "faceops-train-detector":
        return _detector_summary(result, arguments)
    summary = dict(result)
    summary["data"] = data_version_info(arguments.get("repo", "."))
    versions = registry.list_versions(uri)
    champion = next((v for v in versions if "champion" in v["aliases"]), None)
    summary["latest"] = _version(versions[0]) if versions else None
    summary["champion"] = _version(champion) if champion else None
    run_dir = Path(result["pipeline_root"]) / result["run_id"]
    executed = set(result.get("executed", []))
    summary["reused"] = [s for s in STEPS if s not in executed and s not in ("promote", "optimize")]
    registered = run_dir / "register-and-gate" / "registered"
    summary["gate"] = (
        json.loads(registered.read_text()) if "register-and-gate" in executed and registered.is_file() else None
    )
    outcome = run_dir / "optimize" / "decision" / "outcome.json"
    summary["optimize"] = json.loads(outcome.read_text()) if "optimize" in executed and outcome.is_file() else None
    summary["reports"] = {
        "run folder": str(run_dir),
        "evaluation": (summary["latest"] or {}).get("reports"),
        "status log": str(Path(arguments.get("status_dir") or ".") / "status.jsonl"),
        "full log": result.get("log"),
    }
    summary["mlflow_ui"] = (
        f"{Path(sys.executable).with_name('mlflow')} ui --backend-store-uri {registry.tracking_uri(uri)}"
    )
    return summary


DETECTOR_STEPS = ("train-detector", "evaluate-detector", "register-detector", "promote-detector", "record-status")


def _detector_summary(result: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """What a train-detector run did: the gate's decision and the champions of the detector and embedder models."""
    from faceops import registry

    uri = arguments.get("tracking_uri") or None
    model = arguments.get("detector_model") or registry.DETECTOR_MODEL_NAME
    summary = dict(result)
    run_dir = Path(result["pipeline_root"]) / result["run_id"]
    registered = run_dir / "register-detector" / "registered"
    summary["detector_gate"] = json.loads(registered.read_text()) if registered.is_file() else None
    summary["detector_champion"] = registry.alias_version(registry.CHAMPION, uri, model=model)
    summary["model_champion"] = registry.alias_version(registry.CHAMPION, uri)
    summary["reports"] = {"run folder": str(run_dir), "full log": result.get("log")}
    summary["mlflow_ui"] = (
        f"{Path(sys.executable).with_name('mlflow')} ui --backend-store-uri {registry.tracking_uri(uri)}"
    )
    return summary


def _render_detector(summary: dict[str, Any]) -> str:
    lines = [
        f"\n{summary['pipeline']}: {summary['status']} in {summary['seconds']} s (run {summary['run_id']})",
        f"  steps run now: {', '.join(summary['executed']) or '-'}",
    ]
    gate = summary.get("detector_gate")
    if gate:
        lines.append(f"  detector gate: {gate['decision']} (version {gate['version']}: {gate['reason']})")
    lines.append(f"  champion detector: {summary['detector_champion'] or 'none (MTCNN)'}")
    lines.append(f"  champion model: {summary['model_champion'] or 'none'}")
    lines.append("  where to look:")
    lines += [f"    {k}: {p}" for k, p in summary["reports"].items() if p]
    lines.append(f"    MLflow runs and models: {summary['mlflow_ui']}  (then http://127.0.0.1:5000)")
    return "\n".join(lines)


def _version(row: dict[str, Any]) -> dict[str, Any]:
    tags = row.get("tags", {})
    gate = json.loads(tags.get("faceops.evaluation.gate", "{}") or "{}")
    return {
        "version": row["version"],
        "aliases": row["aliases"],
        "created": row["created"],
        "threshold": tags.get("threshold"),
        "metrics": json.loads(tags.get("faceops.evaluation.metrics", "{}") or "{}"),
        "gate": gate.get("reason"),
        "promoted": gate.get("promoted"),
        "trigger": tags.get("faceops.trigger"),
        "reports": tags.get("faceops.reports"),
    }


def render(summary: dict[str, Any]) -> str:
    """The summary as the lines ``make run`` prints."""
    if "detector_gate" in summary:
        return _render_detector(summary)
    data = summary["data"]
    lines = [
        f"\n{summary['pipeline']}: {summary['status']} in {summary['seconds']} s (run {summary['run_id']})",
        f"  data version {data['rev'][:10]} (DVC md5 {data['md5'][:10]}): {data['images']} images of "
        f"{data['identities']} identities, splits {data['splits']}",
        f"  steps run now: {', '.join(summary['executed']) or '-'}",
        f"  reused from the cache: {', '.join(summary['reused']) or '-'}",
    ]
    if summary.get("gate"):
        gate = summary["gate"]
        lines.append(f"  this run's gate: {gate['decision']} (version {gate['version']}: {gate['reason']})")
    if summary.get("optimize"):
        o = summary["optimize"]
        if o["promoted"]:
            verdict = f"version {o['version']} admitted by the parity gate and promoted"
        elif o["admitted"]:
            verdict = f"version {o['version']} admitted (challenger, not promoted)"
        else:
            verdict = "refused: " + "; ".join(o.get("reasons") or [])
        lines.append(f"  faster variant ({o['method']} of version {o['champion_version']}): {verdict}")
        v, c = o.get("variant_lfw"), o.get("champion_lfw")
        if v and c:
            lines.append(
                f"    LFW accuracy {c['accuracy']:.4f} -> {v['accuracy']:.4f}, TAR at the target FAR "
                f"{c['tar_at_far']:.4f} -> {v['tar_at_far']:.4f}, embed ms/face {c['embed_ms_per_face']:.1f} -> "
                f"{v['embed_ms_per_face']:.1f}"
            )
    for label in ("latest", "champion"):
        v = summary.get(label)
        if not v:
            lines.append(f"  {label}: none")
            continue
        m = v["metrics"]
        figures = ", ".join(
            f"{k} {m[k]:.4f}" for k in ("accuracy", "auc", "tar_at_target_far", "far_at_threshold") if k in m
        )
        lines.append(
            f"  {label} model: version {v['version']} {v['aliases'] or ''} threshold {v['threshold']}"
        )
        if figures:
            lines.append(f"    {figures}")
        if label == "latest" and v.get("gate"):
            lines.append(f"    gate: {'promoted' if v['promoted'] else 'not promoted'} ({v['gate']})")
    lines.append("  where to look:")
    lines += [f"    {k}: {p}" for k, p in summary["reports"].items() if p]
    lines.append(f"    MLflow runs and models: {summary['mlflow_ui']}  (then http://127.0.0.1:5000)")
    return "\n".join(lines)
