"""Starting a retraining: the :class:`RetrainTrigger` protocol and the one that runs the Kubeflow pipeline.

The monitor only ever calls ``trigger(reason, data_version)``; tests of the policy inject a recording trigger,
production uses :class:`PipelineTrigger`, which calls ``faceops.kfp.pipelines.run.trigger_retraining`` (``kfp.local``
here,
``kfp.Client`` on a cluster). Its failures (backend unreachable, a failed local run) come back as
:class:`~faceops.errors.FaceOpsError` subclasses, which the monitor records and alerts on; they never crash
it.
"""

from __future__ import annotations

from typing import Any, Protocol

from faceops.monitoring.config import TriggerConfig

from faceops.errors import ConfigError, FaceOpsError, MonitoringError

__all__ = ["PipelineTrigger", "RetrainTrigger", "make_trigger"]


class RetrainTrigger(Protocol):
    """Starts a retraining; returns at least ``run_id`` and ``status``; raises :class:`FaceOpsError`."""

    def __call__(self, reason: str, data_version: str | None = None) -> dict[str, Any]: ...


class PipelineTrigger:
    """The retraining pipeline of ``pipelines/`` on the configured backend, with the configured arguments."""

    def __init__(self, config: TriggerConfig) -> None:
        self.config = config

    def __call__(self, reason: str, data_version: str | None = None) -> dict[str, Any]:
        try:
            from faceops.kfp.pipelines.run import trigger_retraining
        except ImportError as exc:
            raise MonitoringError(
                f"the retraining pipeline is not installed ({exc}): pip install -e '.[mlops]'"
            ) from exc
        arguments = {"repo": str(self.config.repo_root.resolve()), **self.config.arguments}
        try:
            return dict(
                trigger_retraining(
                    reason, data_version, backend=self.config.backend, host=self.config.host, config=arguments
                )
            )
        except FaceOpsError:
            raise
        except (OSError, RuntimeError, ValueError) as exc:  # anything the backend lets through, named
            raise MonitoringError(
                f"the retraining pipeline could not start: {type(exc).__name__}: {exc}"
            ) from exc


def make_trigger(config: TriggerConfig) -> RetrainTrigger | None:
    """The configured trigger, or ``None`` when triggering is disabled."""
    if not config.enabled:
        return None
    if config.backend == "kfp" and not config.host:
        raise ConfigError("trigger.backend 'kfp' needs trigger.host (the Kubeflow Pipelines API URL)")
    return PipelineTrigger(config)
