"""One monitor run, and the ``--every`` loop: window -> drift + feedback figures -> policy -> trigger ->
alert.

Each run ends in exactly one recorded decision (:class:`~faceops.monitoring.state.MonitorState`), whose ``action`` is:

``error``            the monitor could not run (no request log, no champion, registry unreachable); alerted
``empty``            no usable face in the window
``insufficient_data`` too few faces and labels to judge anything
``ok``               judged, no alarm
``alert``            alarms that do not start a retraining (``retrain_on``, or the trigger is disabled)
``retrain``          a retraining was started (run id in the figures)
``cooldown``         alarms, but a retraining already started within the cooldown
``retry_wait``       alarms, but the last start failed less than ``retry_after`` ago
``trigger_failed``   the start failed (backend unreachable, ...); alerted, retried after ``retry_after``
``unrepairable``     the same drift (e.g. brightness down, blur up) with a performance alarm again, after a
                     retraining started for that drift has ended: retraining did not repair it, so the monitor
                     alerts without starting another (until the drift changes or stops); the alert says whether the
                     retrained model was refused by the gate or promoted (:mod:`faceops.monitoring.repair`)

Before judging, a run follows the last retraining it started on a cluster (:func:`~faceops.monitoring.trigger.follow_up`): a run still
PENDING/RUNNING blocks another start; one found FAILED (or CANCELED, or gone) is said in the decision's
reasons and alerted once, and a new start is allowed after the cooldown. The state (decisions, starts, the
runs' states) is :mod:`faceops.monitoring.state`'s: a local SQLite file, or the MLflow server on a cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from faceops.monitoring.alerts import AlertSink, make_sinks, send_all
from faceops.monitoring.config import MonitorConfig
from faceops.monitoring.drift import measure_drift
from faceops.monitoring.policy import judge
from faceops.monitoring.repair import known_unrepairable
from faceops.monitoring.report import plot_features, write_report
from faceops.monitoring.state import FAILED_RUN_STATES, EmbeddingCache, MonitorState, open_state
from faceops.monitoring.trigger import RetrainTrigger, follow_up, make_trigger
from faceops.monitoring.window import Window, read_images, read_window

from faceops.errors import FaceOpsError
from faceops.telemetry.reference import FEATURES, Reference
from faceops.telemetry.requestlog import RequestLogReader
from faceops.telemetry.stats import performance

__all__ = ["MonitorRun", "run_every", "run_once"]

log = logging.getLogger(__name__)
_DEFAULT = object()


@dataclass
class MonitorRun:
    action: str
    reasons: list[str]
    figures: dict[str, Any] = field(default_factory=dict)
    model_version: str | None = None
    report_dir: Path | None = None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    trigger: dict[str, Any] | None = None
    retraining: dict[str, Any] | None = None  # the last retraining started, as followed by this run

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "report_dir": str(self.report_dir) if self.report_dir else None}


def _champion(config: MonitorConfig, cache: Path) -> tuple[str | None, Reference, Callable[[], Any] | None]:
    """(version, reference, a loader of its bundle) from the local reference folder or from MLflow."""
    if config.reference_dir is not None:
        reference = Reference.load(config.reference_dir)
        bundle_dir = config.bundle_dir

        def local_bundle() -> Any:
            from faceops.evaluation.bundle import ModelBundle

            return ModelBundle.load(bundle_dir)

        return reference.meta.get("model_version"), reference, local_bundle if bundle_dir else None
    from faceops.monitoring import reference as store

    version = store.champion_version(config.tracking_uri)
    reference = store.ensure_reference(version, config.tracking_uri, config.data_root, cache)
    return version, reference, lambda: store.load_model(version, config.tracking_uri, cache)


def _embeddings(
    config: MonitorConfig, window: Window, loader: Callable[[], Any] | None, state: EmbeddingCache, model: str
) -> np.ndarray | None:
    """The window's embeddings: logged ones, else those of the stored images of a sample of its requests
    (each image is embedded once: the state caches them by model and request)."""
    if window.embeddings is not None or loader is None or window.faces.empty:
        return window.embeddings
    ids = list(dict.fromkeys(window.faces["request_id"].astype(str)))
    rng = np.random.default_rng(0)
    ids = [ids[i] for i in sorted(rng.choice(len(ids), min(len(ids), config.drift.embedding_sample), replace=False))]
    found = state.cached_embeddings(model, ids)
    images = read_images(config.request_log, [i for i in ids if i not in found])
    if images:
        recognizer = loader().recognizer()
        fresh = {}
        for request_id, data in images.items():
            try:
                _, faces = recognizer.analyze(data)
            except FaceOpsError as exc:
                log.debug("stored image of %s not embedded: %s", request_id, exc)
                faces = []
            fresh[request_id] = (
                np.stack([f.embedding for f in faces]).astype(np.float32) if faces else np.zeros((0, 0), np.float32)
            )
        state.cache_embeddings(model, fresh)
        found.update(fresh)
    vectors = [v for v in found.values() if len(v)]
    return np.concatenate(vectors).astype(np.float32) if vectors else None


def _act(
    alarms: list[Any],
    config: MonitorConfig,
    trigger: RetrainTrigger | None,
    state: MonitorState,
    now: float,
    window: tuple[float, float],
    drift: dict[str, Any] | None = None,
    version: str | None = None,
    figures: dict[str, Any] | None = None,
) -> tuple[str, list[str], dict[str, Any] | None]:
    """Turn alarms into an action, starting a retraining when the policy and the cooldown allow; ``drift`` (the
    drifted features' changes and the :class:`~faceops.training.config.DriftTarget` they make) goes with it, and
    the serving ``version`` is recorded with the start (what became of the retrained model is judged against it).
    A drift known to be unrepairable puts what is known (:func:`~faceops.monitoring.repair.known_unrepairable`)
    in ``figures["unrepairable"]``."""
    reasons = [f"{a.kind}: {a.message}" for a in alarms]
    retrain = [a for a in alarms if a.kind in config.policy.retrain_on]
    if not retrain or trigger is None:
        why = "the trigger is disabled" if retrain else f"no alarm of {list(config.policy.retrain_on)}"
        return "alert", [*reasons, f"no retraining: {why}"], None
    reason = "; ".join(f"{a.kind}: {a.message}" for a in retrain)[:500]
    known = known_unrepairable(state, drift, retrain, version, config.tracking_uri if config.reference_dir is None else None)
    if known:  # before any claim: nothing is reserved for a start that will not happen
        if figures is not None:
            figures["unrepairable"] = known
        return "unrepairable", [*reasons, known["message"]], None
    try:
        claim, why_not = state.claim_trigger(reason, now, config.policy.cooldown, config.policy.retry_after)
    except FaceOpsError as exc:  # without the state there is no cooldown: starting now could start a storm
        return "error", [*reasons, f"no retraining started: {type(exc).__name__}: {exc}"], None
    if claim is None:
        action = "retry_wait" if why_not.startswith("waiting to retry") else "cooldown"
        return action, [*reasons, why_not], None
    info: dict[str, Any] = {"reason": reason, "champion": version}
    target = (drift or {}).get("target") if config.trigger.target_drift else None
    if drift:
        info["drift"] = drift
    try:
        if config.trigger.add_feedback_images:
            from faceops.monitoring.feedback_data import add_confirmed_images

            info["data"] = add_confirmed_images(config.request_log, config.trigger.repo_root, *window)
        rev = (info.get("data") or {}).get("rev")
        started = trigger(reason, rev, drift=target) if target else trigger(reason, rev)
    except FaceOpsError as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        state.finish_trigger(claim, False, info)
        return "trigger_failed", [*reasons, f"retraining could not start: {info['error']}"], info
    info.update(started)
    state.finish_trigger(claim, True, info, (info.get("data") or {}).get("rev"))
    return (
        "retrain",
        [*reasons, f"retraining started: run {started.get('run_id')} ({started.get('status')})"],
        info,
    )


def _to_mlflow(config: MonitorConfig, run: MonitorRun, files: list[Path]) -> str | None:
    from faceops import registry

    perf = run.figures.get("performance") or {}
    metrics = {
        "faces": run.figures["window"]["faces"],
        "labelled": run.figures["window"]["labelled"],
        "rejected_rows": run.figures["window"]["rejected_rows"],
        "drift_share": (run.figures.get("drift") or {}).get("share"),
    }
    for key in ("accuracy", "far", "frr"):
        metrics[key] = (perf.get(key) or {}).get("value")
    tags = {
        "faceops.kind": "monitor",
        "faceops.monitor.action": run.action,
        "model_version": run.model_version,
    }
    with registry.open_run("monitor", config.tracking_uri, tags={k: str(v) for k, v in tags.items()}) as mlrun:
        mlrun.log_metrics({k: v for k, v in metrics.items() if v is not None})
        for path in files:
            mlrun.log_artifact(path, "monitoring")
        return mlrun.run_id


def run_once(
    config: MonitorConfig,
    *,
    now: float | None = None,
    since: float | None = None,
    trigger: RetrainTrigger | None | object = _DEFAULT,
    sinks: list[AlertSink] | None = None,
) -> MonitorRun:
    """Judge the window ``[since or now - window, now)`` and act on it; never raises for bad input."""
    now = time.time() if now is None else now
    span = (since if since is not None else now - config.window, now)
    sinks = make_sinks(config.alerts) if sinks is None else sinks
    out = config.reports_dir / time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    out = out.with_name(f"{out.name}-{int(now * 1000) % 1000:03d}")
    try:
        state = _open_state(config)
    except FaceOpsError as exc:
        return _finish(
            config, None, MonitorRun("error", [f"monitor could not run: {type(exc).__name__}: {exc}"]), span, out, sinks, now
        )
    with state:
        try:
            cache = EmbeddingCache(_cache_path(config))
        except FaceOpsError as exc:
            run = MonitorRun("error", [f"monitor could not run: {type(exc).__name__}: {exc}"])
        else:
            with cache:
                _prune_cache(config, cache, now)
                run = _judge_window(config, span, out, state, cache, now, trigger)
        return _finish(config, state, run, span, out, sinks, now)


def _prune_cache(config: MonitorConfig, cache: EmbeddingCache, now: float) -> None:
    """Drop cached embeddings past ``embedding_cache_max_age`` and those of requests no longer in the log (an
    erased identity's, pruned ones); without a readable log only the age applies (the run reports the log)."""
    try:
        reader = RequestLogReader(config.request_log)
    except FaceOpsError as exc:
        log.debug("embedding cache pruned by age only: %s", exc)
        removed = cache.prune(config.embedding_cache_max_age, now=now)
    else:
        with reader:
            removed = cache.prune(config.embedding_cache_max_age, reader.known_requests, now=now)
    if removed:
        log.info("embedding cache: %d entries dropped (too old, or their request left the log)", removed)


def _finish(
    config: MonitorConfig,
    state: MonitorState | None,
    run: MonitorRun,
    span: tuple[float, float],
    out: Path,
    sinks: list[AlertSink],
    now: float,
) -> MonitorRun:
    """Alert, write the report (and log it to MLflow), record the decision."""
    followed = run.retraining or {}
    newly_failed = bool(followed.get("newly_final")) and followed.get("state") in FAILED_RUN_STATES
    alerting = ("alert", "retrain", "cooldown", "retry_wait", "trigger_failed", "error", "unrepairable")
    if run.action in alerting or newly_failed:
        severity = {"error": "error", "trigger_failed": "critical", "retrain": "critical"}.get(
            run.action, "error" if newly_failed else "warning"
        )
        summary = f"FaceOps monitor: {run.action} (model version {run.model_version})"
        if newly_failed:
            summary += f"; retraining run {followed.get('run_id')} {followed.get('state')}"
        known = run.figures.get("unrepairable")
        if known:
            summary += f"; the retrained model was {known['outcome']}" + (
                f" (version {known['version']})" if known.get("version") else ""
            )
        run.alerts = send_all(
            sinks,
            {
                "source": "faceops-monitor",
                "severity": severity,
                "action": run.action,
                "summary": summary,
                "reasons": run.reasons,
                "figures": {k: v for k, v in run.figures.items() if k != "drift"},
                "drift": run.figures.get("drift"),
                "window": {"start": span[0], "end": span[1]},
                "model_version": run.model_version,
                "report": str(out),
                "trigger": run.trigger,
                "retraining": run.retraining,
                "ts": now,
            },
        )
    report = {
        "decision": {"action": run.action, "reasons": run.reasons},
        **run.figures,
        "alerts": run.alerts,
        "trigger": run.trigger,
        "retraining": run.retraining,
        "model_version": run.model_version,
    }
    report.setdefault("window", {"start": span[0], "end": span[1]})
    files = write_report(report, out)
    run.report_dir = out
    if config.log_to_mlflow and run.action != "error":
        try:
            run.figures["mlflow_run_id"] = _to_mlflow(config, run, files)
        except FaceOpsError as exc:
            run.reasons.append(f"report not logged to MLflow: {exc}")
    if state is not None:
        try:
            state.record_decision(
                run.action,
                run.reasons,
                {**run.figures, "alerts": run.alerts, "trigger": run.trigger, "retraining": run.retraining},
                window=span,
                model_version=run.model_version,
                report=str(out),
                ts=now,
            )
        except FaceOpsError as exc:  # alerted and reported already; the decision log is what is lost
            log.error("monitor decision not recorded: %s", exc)
            run.reasons.append(f"decision not recorded in the monitor state: {exc}")
    log.info("monitor: %s (%s)", run.action, "; ".join(run.reasons))
    return run


def _open_state(config: MonitorConfig) -> MonitorState:
    return open_state(
        config.state_backend,
        config.state_path,
        tracking_uri=config.tracking_uri,
        experiment=config.state_experiment,
    )


def _cache_path(config: MonitorConfig) -> Path:
    if config.embedding_cache is not None:
        return config.embedding_cache
    if config.state_backend == "local":
        return config.state_path
    return config.reports_dir / ".cache" / "embeddings.sqlite"


def _judge_window(
    config: MonitorConfig,
    span: tuple[float, float],
    out: Path,
    state: MonitorState,
    cache: EmbeddingCache,
    now: float,
    trigger: RetrainTrigger | None | object,
) -> MonitorRun:
    try:
        active = make_trigger(config.trigger) if trigger is _DEFAULT else trigger
        followed, notes = follow_up(state, active)  # type: ignore[arg-type]
    except FaceOpsError as exc:
        return MonitorRun("error", [f"monitor could not run: {type(exc).__name__}: {exc}"])
    run = _judge(config, span, out, cache, state, now, active)
    run.retraining = followed
    run.reasons.extend(notes)
    return run


def _judge(
    config: MonitorConfig,
    span: tuple[float, float],
    out: Path,
    cache: EmbeddingCache,
    state: MonitorState,
    now: float,
    active: Any,
) -> MonitorRun:
    try:
        version, reference, loader = _champion(config, config.reports_dir / ".cache")
        window = read_window(config.request_log, *span, version if config.only_champion_rows else None)
    except FaceOpsError as exc:
        return MonitorRun("error", [f"monitor could not run: {type(exc).__name__}: {exc}"])
    figures: dict[str, Any] = {"window": window.summary(), "reference": reference.meta}
    if window.faces.empty:
        why = f"empty window: no usable face logged between {time.ctime(span[0])} and {time.ctime(span[1])}"
        if window.rejected:
            why += f" ({len(window.rejected)} corrupt row(s) left out)"
        return MonitorRun("empty", [why], figures, version)
    drift = None
    if len(window.faces) >= config.policy.min_faces:
        out.mkdir(parents=True, exist_ok=True)
        embeddings = _embeddings(config, window, loader, cache, f"{version}:{reference.meta.get('model_id')}")
        drift = measure_drift(reference, window.faces, embeddings, config.drift, out / "drift.html")
        plot_features(reference.features, {c: window.faces[c].to_numpy(float) for c in FEATURES}, out / "features.png")
        figures["drift"] = drift.to_dict()
    perf = performance(window.labelled) if window.labelled else None
    figures["performance"] = perf.to_dict() if perf else None
    verdict = judge(
        drift,
        len(window.faces),
        perf,
        reference.meta.get("performance") or {},
        reference.meta.get("target_far"),
        config.policy,
    )
    figures["policy"] = verdict.to_dict()
    if window.rejected:
        verdict.notes.append(f"{len(window.rejected)} corrupt log row(s) left out, e.g. {window.rejected[0]['problem']}")
    if not verdict.alarms:
        action = "ok" if verdict.judged else "insufficient_data"
        return MonitorRun(action, verdict.notes or ["no alarm"], figures, version)
    action, reasons, info = _act(
        verdict.alarms, config, active, state, now, span, _drift_payload(drift), version, figures
    )
    return MonitorRun(action, reasons + verdict.notes, figures, version, trigger=info)


def _drift_payload(drift: Any) -> dict[str, Any] | None:
    """What drifted and how, and what a retraining can target (None: nothing drifted)."""
    if drift is None or not drift.drifted:
        return None
    from faceops.training.drift_plan import drift_target, gate_conditions

    changes = drift.changes
    target = drift_target(changes)
    return {
        "changes": changes,
        "target": target.model_dump(mode="json") if target else None,
        "gate_conditions": gate_conditions(target) if target else [],
    }


def run_every(
    config: MonitorConfig,
    every_s: float,
    *,
    max_runs: int | None = None,
    on_run: Callable[[MonitorRun], None] | None = None,
    **kwargs: Any,
) -> int:
    """Run every ``every_s`` seconds (a long-running process) until ``max_runs``; returns the runs made."""
    runs = 0
    while max_runs is None or runs < max_runs:
        started = time.time()
        run = run_once(config, **kwargs)
        runs += 1
        if on_run:
            on_run(run)
        if max_runs is not None and runs >= max_runs:
            break
        time.sleep(max(0.0, every_s - (time.time() - started)))
    return runs
