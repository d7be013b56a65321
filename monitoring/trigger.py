"""Starting a retraining: the :class:`RetrainTrigger` protocol and the one that runs the Kubeflow pipeline.

The monitor calls ``trigger(reason, data_version)``; tests of the policy inject a recording trigger, production
uses :class:`PipelineTrigger`, which calls ``faceops.kfp.pipelines.run.trigger_retraining``: ``kfp.local`` here
(the run has ended when it returns), or a Kubeflow Pipelines API on a cluster, with the namespace, experiment and
credentials of the config (:class:`~faceops.kfp.pipelines.client.KfpConnection`); the run it submitted is then
followed by the next monitor runs through :meth:`PipelineTrigger.run_state`. Failures (backend unreachable,
credentials refused, a failed local run) come back as :class:`~faceops.errors.FaceOpsError` subclasses, which
the monitor records and alerts on; they never crash it.
"""

from __future__ import annotations

import os
import time
from typing import Any, Protocol, runtime_checkable

from faceops.monitoring.config import TriggerConfig
from faceops.monitoring.state import FAILED_RUN_STATES, FINAL_RUN_STATES, MonitorState

from faceops.errors import ConfigError, FaceOpsError, MonitoringError

__all__ = ["PipelineTrigger", "RetrainTrigger", "TracksRuns", "follow_up", "make_trigger", "pipeline_arguments"]


class RetrainTrigger(Protocol):
    """Starts a retraining; returns at least ``run_id`` and ``status``; raises :class:`FaceOpsError`."""

    def __call__(
        self, reason: str, data_version: str | None = None, drift: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...


@runtime_checkable
class TracksRuns(Protocol):
    """A trigger whose runs outlive the call: ``run_state(run_id)`` returns at least ``state`` and ``error``."""

    def run_state(self, run_id: str) -> dict[str, Any]: ...


class PipelineTrigger:
    """The retraining pipeline of ``pipelines/`` on the configured backend, with the configured arguments."""

    def __init__(self, config: TriggerConfig) -> None:
        self.config = config

    def connection(self) -> Any:
        """The :class:`~faceops.kfp.pipelines.client.KfpConnection` of the config (backend 'kfp')."""
        from faceops.kfp.pipelines.client import KfpConnection

        c = self.config
        return KfpConnection(
            host=c.host,
            namespace=c.namespace,
            token_path=c.token_path,
            auth=c.auth,
            verify_ssl=c.verify_ssl,
            ssl_ca_cert=str(c.ssl_ca_cert) if c.ssl_ca_cert else None,
        )

    def __call__(
        self, reason: str, data_version: str | None = None, drift: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Start the pipeline; ``drift`` (a :class:`~faceops.training.config.DriftTarget` as a dict) goes into
        its run config, where training turns it into augmentation and preprocessing."""
        try:
            from faceops.kfp.pipelines.run import trigger_retraining
        except ImportError as exc:
            raise MonitoringError(f"the retraining pipeline is not installed ({exc}): pip install -e '.[mlops]'") from exc
        c = self.config
        arguments = pipeline_arguments(c.arguments, drift)
        try:
            if c.backend == "kfp":  # the steps' pods see no path of this machine: no repo argument
                return dict(
                    trigger_retraining(
                        reason,
                        data_version,
                        backend="kfp",
                        config=arguments,
                        connection=self.connection(),
                        experiment=c.experiment,
                        service_account=c.service_account,
                        cache_pvc=c.cache_pvc,
                    )
                )
            local = {"repo": str(c.repo_root.resolve()), **arguments}
            return dict(trigger_retraining(reason, data_version, backend=c.backend, config=local))
        except FaceOpsError:
            raise
        except (OSError, RuntimeError, ValueError) as exc:  # anything the backend lets through, named
            raise MonitoringError(f"the retraining pipeline could not start: {type(exc).__name__}: {exc}") from exc

    def run_state(self, run_id: str) -> dict[str, Any]:
        """The state of a run this trigger started on a cluster; a local run has ended when it returned."""
        if self.config.backend != "kfp":
            return {"run_id": run_id, "state": "SUCCEEDED", "error": None}
        from faceops.kfp.pipelines.client import run_state

        return run_state(run_id, self.connection())


def pipeline_arguments(arguments: dict[str, Any], drift: dict[str, Any] | None) -> dict[str, Any]:
    """The pipeline's arguments for a run started for ``drift``: its run config gains ``drift`` (training turns it
    into augmentation and preprocessing) and gate robustness criteria on the drifted conditions."""
    out = dict(arguments)
    if not drift:
        return out
    from faceops.training.config import DriftTarget
    from faceops.training.drift_plan import gate_for_drift

    run_config = dict(out.get("run_config") or {})
    gate = gate_for_drift(DriftTarget.model_validate(drift), run_config.get("gate"))
    out["run_config"] = {**run_config, "drift": drift, **({"gate": gate} if gate else {})}
    return out


def follow_up(state: MonitorState, trigger: RetrainTrigger | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The last retraining started and what became of it (asking the trigger when its run had not ended),
    with the notes the decision carries; a state that changed is recorded."""
    last = next((t for t in state.triggers(10) if t["status"] == "started"), None)
    if last is None:
        return None, []
    detail = last.get("detail") or {}
    run_id = detail.get("run_id")
    info: dict[str, Any] = {
        "run_id": run_id,
        "started": last["ts"],
        "state": last.get("run_state"),
        "error": last.get("run_error"),
        "backend": detail.get("backend"),
        "url": detail.get("url"),
        "newly_final": False,
    }
    notes: list[str] = []
    if run_id and info["state"] not in FINAL_RUN_STATES and isinstance(trigger, TracksRuns):
        try:
            seen = trigger.run_state(str(run_id))
        except FaceOpsError as exc:
            info["check_error"] = f"{type(exc).__name__}: {exc}"
            notes.append(f"state of the retraining run {run_id} unknown: {info['check_error']}")
        else:
            info.update(state=seen.get("state"), error=seen.get("error"))
            info["newly_final"] = info["state"] in FINAL_RUN_STATES
            if info["state"] != last.get("run_state") or info["error"] != last.get("run_error"):
                state.record_run_state(last["id"], str(info["state"]), info["error"])
    if info["state"] in FAILED_RUN_STATES:
        why = f": {info['error']}" if info["error"] else ""
        notes.append(
            f"the last retraining (run {run_id}, started {time.ctime(last['ts'])}) ended {info['state']}{why}; "
            "a new one may start once the cooldown is over"
        )
    return info, notes


def make_trigger(config: TriggerConfig) -> RetrainTrigger | None:
    """The configured trigger, or ``None`` when triggering is disabled."""
    if not config.enabled:
        return None
    if config.backend == "kfp" and not (config.host or os.environ.get("KF_PIPELINES_ENDPOINT")):
        raise ConfigError("trigger.backend 'kfp' needs trigger.host or KF_PIPELINES_ENDPOINT (the Kubeflow Pipelines API URL)")
    return PipelineTrigger(config)
