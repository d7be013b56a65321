"""The model steps of the training pipeline as plain functions: train, evaluate, register and gate, promote.

Composes :mod:`faceops.training.run`, :mod:`faceops.evaluation.gate` and :mod:`faceops.registry` without changing them.
The gate is split in two so the pipeline can branch on it (``dsl.If``): :func:`register_and_gate` registers
the challenger and decides, :func:`promote` moves the ``champion`` alias when the decision was to promote.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from faceops.steps.data import parse_config, train_config

__all__ = ["evaluate_step", "log_monitoring_reference", "promote", "record_status", "register_and_gate", "train_step"]

log = logging.getLogger(__name__)

_PLOTS = ("roc_open_set.png", "training_curves.png", "confusion_finetuned.png", "per_identity_finetuned.png")


def _key_metrics(flat: dict[str, float]) -> dict[str, float]:
    keep = (
        "closed_accuracy",
        "closed_macro_f1",
        "open_auc",
        "open_eer",
        "open_threshold",
        "open_far_at_threshold",
    )
    out = {k: v for k, v in flat.items() if k in keep or k.startswith("open_tar_at_far")}
    return {k.replace("@", "_at_"): float(v) for k, v in out.items()}


class _EpochCounter(logging.Handler):
    """Counts the epochs :func:`faceops.training.fit.fit` logs (one INFO record per finished epoch) and reports
    them to ``progress``; fit takes no callback, its log is how it says an epoch is done."""

    def __init__(self, progress: Callable[[int, int], None], total: int) -> None:
        super().__init__(logging.INFO)
        self.progress, self.total, self.done = progress, total, 0

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and " epoch " in record.msg and record.msg.startswith("%s epoch"):
            self.done += 1
            self.progress(min(self.done, self.total), self.total)


@contextlib.contextmanager
def _epoch_progress(progress: Callable[[int, int], None] | None, total: int) -> Iterator[None]:
    if progress is None:
        yield
        return
    logger = logging.getLogger("faceops.training.fit")
    counter = _EpochCounter(progress, total)
    level = logger.level
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    logger.addHandler(counter)
    progress(0, total)
    try:
        yield
    finally:
        logger.removeHandler(counter)
        logger.setLevel(level)


def train_step(
    data_dir: str | Path,
    run_config: dict[str, Any] | None,
    out_dir: str | Path,
    cache_dir: str | Path,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Fine-tune on the data version; ``out_dir`` gets ``bundle/``, ``report.json``, plots, ``report.html``.

    Args:
        cache_dir: the cache root of the crops and the trunk activations.
        workers: data-parallel worker processes (torch DDP, gloo); 1 trains in this process.
        progress: called with (epochs done, most epochs of the two stages) as epochs finish (early stopping
            may end a stage sooner); with DDP the epochs run in the workers and only the start is reported.
    """
    from faceops.reports.page import write_page
    from faceops.training.run import flat_metrics, run_training

    config = train_config(run_config, data_dir, out_dir)
    epochs = config.head_stage.epochs + config.finetune_stage.epochs
    with _epoch_progress(progress, epochs):
        if workers > 1:
            from faceops.training.ddp import run_training_ddp

            result = run_training_ddp(config, workers, Path(cache_dir))
        else:
            result = run_training(config, log_to_mlflow=False, cache_dir=Path(cache_dir))
    metrics = {
        **_key_metrics(flat_metrics(result.report, "finetuned")),
        **{f"baseline_{k}": v for k, v in _key_metrics(flat_metrics(result.report, "pretrained")).items()},
        "classes": float(result.report["classes"]),
        "epochs": float(len(result.report["history"])),
        "workers": float(workers),
    }
    out = Path(out_dir)
    write_page(
        out / "report.html",
        "Training",
        {"Metrics (fine-tuned vs pretrained baseline)": metrics, "Epochs": result.report["history"]},
        [out / p for p in _PLOTS if (out / p).is_file()],
    )
    return metrics


def evaluate_step(
    model_dir: str | Path,
    data_dir: str | Path,
    run_config: dict[str, Any] | None,
    out_dir: str | Path,
    cache_dir: str | Path,
) -> dict[str, float]:
    """Evaluate the trained bundle at its stored threshold; ``out_dir`` gets ``report.json``, plots, HTML.
    ``cache_dir`` is the crop and trunk cache root."""
    from faceops.evaluation.bundle import ModelBundle
    from faceops.reports.page import write_page
    from faceops.training.run import evaluate_bundles, flat_metrics

    config = train_config(run_config, data_dir, out_dir)
    bundle = ModelBundle.load(Path(model_dir) / "bundle")
    result = evaluate_bundles(
        {"challenger": bundle},
        Path(data_dir),
        config.evaluation,
        Path(out_dir),
        lfw_pairs=config.lfw_pairs,
        cache_dir=Path(cache_dir),
    )
    metrics = _key_metrics(flat_metrics(result.report, "challenger"))
    stored = result.report["models"]["challenger"]["open_set"].get("far_at_stored_threshold")
    if stored is not None:
        metrics["open_far_at_stored_threshold"] = float(stored)
    metrics["stored_threshold"] = float(bundle.threshold)
    write_page(Path(out_dir) / "report.html", "Evaluation", {"Metrics": metrics}, result.plots)
    return metrics


def register_and_gate(
    model_dir: str | Path,
    eval_dir: str | Path,
    data_dir: str | Path,
    run_config: dict[str, Any] | None,
    *,
    cache_dir: str | Path,
    gate: dict[str, Any] | None = None,
    tracking_uri: str = "",
    data_info: dict[str, Any] | None = None,
    trigger: str = "",
    reports_uri: str = "",
) -> dict[str, Any]:
    """Log the run, register its bundle as ``challenger``, then decide (not promote) against the champion.

    Both models are measured on the same data version at their stored thresholds (crops and trunk
    activations from ``cache_dir``); the decision and its reason are tagged on the new model version
    (``faceops.evaluation.gate``), with ``reports_uri`` (the evaluation artifact's URI; default: ``eval_dir``).

    Returns:
        ``version``, ``run_id``, ``decision`` ('promote' or 'reject'), ``reason``, ``champion`` (or None).
    """
    from faceops import registry
    from faceops.evaluation.bundle import ModelBundle
    from faceops.evaluation.gate import decide, key_metrics, same_model, with_lfw
    from faceops.training.config import GateConfig
    from faceops.training.run import RunResult, _log_run, evaluate_bundles

    uri = tracking_uri or None
    model_dir = Path(model_dir)
    config = train_config(run_config, data_dir, model_dir)
    gate_config = parse_config(GateConfig, {**config.gate.model_dump(), **(gate or {})}, "gate tolerances")
    report = json.loads((model_dir / "report.json").read_text())
    result = RunResult(model_dir, report, sorted(model_dir.glob("*.png")), model_dir / "bundle")
    bundle = ModelBundle.load(model_dir / "bundle")
    champion = registry.alias_version(registry.CHAMPION, uri)
    challenger = with_lfw(json.loads((Path(eval_dir) / "report.json").read_text()))["challenger"]
    old = registry.load_bundle(f"models:/{registry.MODEL_NAME}/{champion}", uri) if champion is not None else None
    same_as = None
    if old is not None and same_model(bundle, old):  # e.g. a re-run on the same data: no duplicate version
        same_as = f"champion version {champion}"
    elif old is not None and old.metadata.get("source_version"):  # the champion is a faster variant of a version
        source = str(old.metadata["source_version"])
        if same_model(bundle, registry.load_bundle(f"models:/{registry.MODEL_NAME}/{source}", uri)):
            same_as = f"version {source}, whose {old.metadata.get('method', 'optimised')} variant is champion {champion}"
    if same_as is not None:
        return {
            "version": champion,
            "run_id": None,
            "decision": "reject",
            "reason": f"refused: the trained model is {same_as} (same weights, preprocessing and threshold); nothing "
            "new registered",
            "champion": champion,
            "metrics": key_metrics(challenger),
        }
    # Everything that can fail without touching the registry comes first (the champion's evaluation, the
    # decision); then the version is registered, tagged with the decision, and deleted again if that fails:
    # a failure at any point leaves no half-registered version behind.
    previous = None
    if old is not None:
        previous = with_lfw(
            evaluate_bundles(
                {"champion": old},
                Path(data_dir),
                config.evaluation,
                lfw_pairs=config.lfw_pairs,
                cache_dir=Path(cache_dir),
            ).report
        )["champion"]
    if gate_config.robustness is not None or gate_config.groups is not None:  # e.g. a drift-targeted run's gate
        from faceops.evaluation.robustness import gate_suite

        suite = {"evaluation": config.evaluation, "lfw_pairs": config.lfw_pairs}
        challenger["robustness"] = gate_suite(bundle, gate_config, Path(data_dir), **suite)
        if previous is not None and old is not None:
            previous["robustness"] = gate_suite(old, gate_config, Path(data_dir), **suite)
    promoted, reason = decide(challenger, previous, gate_config)
    tags = {
        "faceops.evaluation.gate": json.dumps({"promoted": promoted, "reason": reason, "champion": champion}),
        "faceops.evaluation.metrics": json.dumps({k: round(v, 5) for k, v in key_metrics(challenger).items()}),
        "faceops.reports": reports_uri or str(Path(eval_dir).resolve()),
    }
    if trigger:
        tags["faceops.trigger"] = trigger
    if data_info:
        tags["faceops.data_version"] = json.dumps({k: data_info.get(k) for k in ("rev", "md5", "images")})
    _log_run(result, config, bundle, uri)
    version = str(result.version)
    try:
        log_monitoring_reference(bundle, Path(data_dir), version, result.run_id, uri)
        registry.tag_version(version, tags, uri)
    except BaseException:
        registry.delete_version(version, uri)
        raise
    return {
        "version": version,
        "run_id": result.run_id,
        "decision": "promote" if promoted else "reject",
        "reason": reason,
        "champion": champion,
        "metrics": key_metrics(challenger),
    }


REFERENCE_IMAGES = 400  # images of the data version behind a model's monitoring reference (a sample: seconds)


def log_monitoring_reference(bundle: Any, data_dir: Path, version: str, run_id: str | None, uri: str | None) -> None:
    """Log the distributions monitoring will hold production against with the model's run, at evaluation time
    and on the data version it was evaluated on; when that cannot be done, monitoring computes it later."""
    from faceops.errors import DataValidationFailed, RegistryError
    from faceops.telemetry.reference import compute_reference, log_to_run

    if not run_id:
        return
    try:
        reference = compute_reference(bundle, data_dir, max_images=REFERENCE_IMAGES)
        reference.meta["model_version"] = version
        log_to_run(reference, run_id, uri)
    except (DataValidationFailed, RegistryError) as exc:
        log.warning("version %s: no monitoring reference logged (%s); the monitor will compute one", version, exc)


def promote(version: str, reason: str, tracking_uri: str = "") -> str:
    """Give ``version`` the ``champion`` alias (recorded in the champion history with ``reason``)."""
    from faceops import registry

    registry.set_alias(registry.CHAMPION, str(version), reason, tracking_uri or None)
    return str(version)


def record_status(
    pipeline: str, status: dict[str, Any], status_dir: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Append a run's final status (``state``, the failed task, the error) to ``status.jsonl``."""
    error = status.get("error") or {}
    entry = {
        "pipeline": pipeline,
        "state": status.get("state"),
        "task": status.get("pipeline_task_name") or status.get("pipelineTaskName"),
        "job": status.get("pipeline_job_resource_name") or status.get("pipelineJobResourceName"),
        "error": error.get("message") if isinstance(error, dict) else str(error),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    path = Path(status_dir) / "status.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
    return path
