"""Whole runs: preprocess -> train -> evaluate -> bundle -> MLflow, and the evaluation of saved models.

A run writes everything into its output folder (``bundle/``, ``report.json``, PNG plots, ``stats.csv``,
``checkpoint.pt``) before anything reaches MLflow, so a failure leaves no half-registered model; MLflow then
gets the resolved config, metrics (per-epoch curves included), plots, the data version and the bundle as a
model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from faceops.data.crops import preprocess_dataset
from faceops.data.manifest import read_manifest
from faceops.data.versioning import read_pointer
from faceops.evaluation.bundle import ModelBundle
from faceops.evaluation.evaluate import evaluate_models, lfw_pairs_report
from faceops.evaluation.plots import write_plots
from faceops.face.device import resolve_device
from faceops.face.embedding import load_backbone
from faceops.training.config import EvalConfig, LfwPairsConfig, TrainConfig
from faceops.training.drift_plan import plan_run
from faceops.training.features import TrunkCache
from faceops.training.fit import fit

__all__ = ["RunResult", "data_version", "evaluate_bundles", "flat_metrics", "run_training"]


@dataclass
class RunResult:
    """What a run produced."""

    output_dir: Path
    report: dict[str, Any]
    plots: list[Path] = field(default_factory=list)
    bundle_dir: Path | None = None
    version: str | None = None
    run_id: str | None = None


def data_version(data_root: Path) -> dict[str, str]:
    """The data version: the manifest's hash, the DVC md5 of ``<data_root>.dvc`` if present, the git
    revision."""
    root = Path(data_root)
    out = {"manifest_sha256": hashlib.sha256((root / "manifest.csv").read_bytes()).hexdigest()[:16]}
    pointer = read_pointer(root.parent, target=root.name)
    if pointer is not None:
        out["dvc_md5"] = pointer.md5
    try:
        out["git_rev"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                cwd=root if root.is_dir() else None,
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        out["git_rev"] = "unknown"
    return out


def _json_ready(results: dict[str, Any]) -> dict[str, Any]:
    """The report without the raw pair scores (kept in memory for plots only)."""
    return {
        name: {**r, "open_set": {k: v for k, v in r["open_set"].items() if k not in ("scores", "labels")}}
        for name, r in results.items()
    }


def flat_metrics(report: dict[str, Any], model: str, prefix: str = "") -> dict[str, float]:
    """MLflow metrics of one model of a report (``closed_accuracy``, ``open_tar_at_far_0.001``, ...)."""
    r = report["models"][model]
    closed, opened = r["closed_set"], r["open_set"]
    out = {f"closed_{k}": closed[k] for k in ("accuracy", "macro_precision", "macro_recall", "macro_f1")}
    out.update(
        {f"open_{k}": opened[k] for k in ("auc", "eer", "threshold", "far_at_threshold", "frr_at_threshold")}
    )
    out.update({f"open_tar_at_far_{k}": v for k, v in opened["tar_at_far"].items()})
    if "far_at_stored_threshold" in opened:
        out["open_far_at_stored_threshold"] = opened["far_at_stored_threshold"]
    lfw = report.get("lfw_pairs", {}).get(model, {})
    for subset, rep in lfw.items():
        out.update({f"lfw_{subset}_auc": rep["auc"], f"lfw_{subset}_eer": rep["eer"]})
        if rep.get("accuracy_mean") is not None:
            out[f"lfw_{subset}_accuracy"] = rep["accuracy_mean"]
        out.update({f"lfw_{subset}_tar_at_far_{k}": v for k, v in rep["tar_at_far"].items()})
    return {prefix + k: float(v) for k, v in out.items()}


def _write_report(out: Path, report: dict[str, Any]) -> Path:
    path = out / "report.json"
    path.write_text(
        json.dumps(report, indent=2, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
    )
    return path


def run_training(
    config: TrainConfig,
    tracking_uri: str | None = None,
    log_to_mlflow: bool | None = None,
    fit_fn: Callable[..., Any] = fit,
    *,
    cache_dir: Path,
) -> RunResult:
    """Train (with ``fit_fn``, :func:`faceops.training.fit.fit` or e.g. its DDP twin), evaluate (against the
    pretrained model too), save the bundle and (by default) register it.

    ``cache_dir`` is the cache root of the crops and the trunk activations (the CLI passes the
    ``FACEOPS_CACHE_DIR`` setting, a pipeline its ``cache_dir`` parameter).
    """
    read_manifest(config.data_root)  # no manifest, an empty one: the error before anything is written
    out = config.output_dir
    out.mkdir(parents=True, exist_ok=True)
    config, drift_plan = plan_run(config, cache_dir)  # a run started for a drift targets it
    (out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    clock = [time.perf_counter()]

    def lap() -> float:
        clock.append(time.perf_counter())
        return round(clock[-1] - clock[-2], 1)

    pre = preprocess_dataset(config.data_root, config.preprocess, cache_dir=cache_dir, stats_path=out / "stats.csv")
    timings = {"preprocess_s": lap()}
    device = resolve_device(None if config.device == "auto" else config.device)
    backbone, base_id = load_backbone()
    pretrained = copy.deepcopy(backbone)
    trunk = TrunkCache(cache_dir, backbone, config.cut, config.preprocess.fingerprint(), device)
    state, classes = fit_fn(backbone, pre, config, trunk, device, out / "checkpoint.pt")
    timings["train_s"] = lap()  # trunk caching of the training views included
    models = {"finetuned": backbone, "pretrained": pretrained}
    results = evaluate_models(models, pre, config.evaluation, trunk, device=device)
    timings["evaluate_s"] = lap()
    version_info = data_version(config.data_root)
    report: dict[str, Any] = {
        "data_version": version_info,
        "classes": len(classes),
        "history": state.history,
        "preprocess_failed": len(pre.failed),
        "models": _json_ready(results),
        "timings": timings,
    }
    if drift_plan:
        report["drift_plan"] = drift_plan
    if config.lfw_pairs:
        report["lfw_pairs"] = lfw_pairs_report(
            models, config.lfw_pairs, config.preprocess, cache_dir, trunk, set(classes), device
        )
        timings["lfw_pairs_s"] = lap()
    opened = results["finetuned"]["open_set"]
    bundle = ModelBundle(
        backbone=backbone,
        preprocess=config.preprocess,
        threshold=float(opened["threshold"]),
        target_far=config.evaluation.target_far,
        metadata={
            "data_version": version_info,
            "base_model": base_id,
            "cut": config.cut,
            "classes": len(classes),
            "metrics": flat_metrics(report, "finetuned"),
            **({"drift_plan": drift_plan} if drift_plan else {}),
        },
    )
    bundle_dir = bundle.save(out / "bundle")
    plots = write_plots(results, out, state.history, config.evaluation.max_confusion_classes)
    _write_report(out, report)
    result = RunResult(out, report, plots, bundle_dir)
    if log_to_mlflow if log_to_mlflow is not None else config.mlflow:
        _log_run(result, config, bundle, tracking_uri)
    return result


def _log_run(result: RunResult, config: TrainConfig, bundle: ModelBundle, uri: str | None) -> None:
    from faceops import registry

    report = result.report
    with registry.open_run("train", uri, tags={"faceops.kind": "train"}) as run:
        run.log_params(_flat_params(config.model_dump(mode="json")))
        run.set_tags({f"data.{k}": v for k, v in report["data_version"].items()})
        for step, epoch in enumerate(report["history"], start=1):
            run.log_metrics(
                {k: epoch[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "lr")}, step
            )
        run.log_metrics(flat_metrics(report, "finetuned"))
        run.log_metrics(flat_metrics(report, "pretrained", prefix="baseline_"))
        run.log_dict(config.model_dump(mode="json"), "config.json")
        for path in [*result.plots, result.output_dir / "report.json", result.output_dir / "stats.csv"]:
            run.log_artifact(path, "evaluation")
        result.version = run.log_bundle(bundle, tags={"faceops.kind": "finetuned"})
        result.run_id = run.run_id


def _flat_params(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat_params(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def evaluate_bundles(
    bundles: dict[str, ModelBundle],
    data_root: Path,
    config: EvalConfig,
    output_dir: Path | None = None,
    lfw_pairs: LfwPairsConfig | None = None,
    device: str | None = None,
    *,
    cache_dir: Path,
) -> RunResult:
    """Evaluate saved models on a data version, each with its own preprocessing, at their stored
    thresholds; with ``lfw_pairs``, also LFW's pairs protocol (its ``clean`` subset: the pairs of people
    outside the data version's train and val identities). ``cache_dir``: the crop and trunk cache root."""
    device = resolve_device(device)
    trained = {r.identity for r in read_manifest(data_root) if r.split in ("train", "val")} if lfw_pairs else set()
    results: dict[str, Any] = {}
    lfw: dict[str, Any] = {}
    for name, bundle in bundles.items():
        pre = preprocess_dataset(data_root, bundle.preprocess, cache_dir=cache_dir, show_progress=True)
        trunk = (  # ONNX networks embed whole crops: no cached trunk
            TrunkCache(
                cache_dir,
                bundle.backbone,
                str(bundle.metadata.get("cut", "block8")),
                bundle.preprocess.fingerprint(),
                device,
            )
            if isinstance(bundle.backbone, torch.nn.Module)
            else None
        )
        results.update(
            evaluate_models({name: bundle.backbone}, pre, config, trunk, {name: bundle.threshold}, device)
        )
        if lfw_pairs:
            lfw.update(
                lfw_pairs_report(
                    {name: bundle.backbone}, lfw_pairs, bundle.preprocess, cache_dir, trunk, trained, device
                )
            )
    report: dict[str, Any] = {"data_version": data_version(data_root), "models": _json_ready(results)}
    if lfw:
        report["lfw_pairs"] = lfw
    result = RunResult(output_dir or Path("."), report)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        result.plots = write_plots(results, output_dir, None, config.max_confusion_classes)
        _write_report(output_dir, report)
    return result
