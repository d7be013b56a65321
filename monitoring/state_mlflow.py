"""The monitor's state on the MLflow tracking server (``state_backend: mlflow``): durable across pods.

Records live in one experiment (``faceops-monitoring`` by default), written through :mod:`faceops.registry`
(the one module importing MLflow). Each is a finished run:

``faceops.monitor.record = decision``
    one per monitor run: tags ``faceops.monitor.action``, ``.reasons`` (JSON), ``.ts``, ``.window_start``,
    ``.window_end``, ``.model_version``, ``.report``; the figures as the artifact ``decision.json``.
``faceops.monitor.record = trigger``
    one per retraining start: tags ``faceops.monitor.status`` (pending, started, failed, withdrawn),
    ``.ts``, ``.reason``, ``.data_version``, ``.detail`` (JSON); the pipeline run as ``faceops.kfp.run_id``,
    ``faceops.kfp.state``, ``faceops.kfp.error``, ``faceops.kfp.host``, ``faceops.kfp.namespace``.

A record's start time is its ``ts`` (ms), so ``search_runs`` ordered by start time lists them newest first.

MLflow has no transactions, so a claim is written first and read back: it stands only when no *other* live
start (pending or started, within the rules of :func:`~faceops.monitoring.state.blocking_reason`) is seen
after it was written; otherwise it is withdrawn. Two monitors that claim in the same instant may both
withdraw (the next run tries again); two never both start. On a cluster the CronJob's
``concurrencyPolicy: Forbid`` makes even that rare.
"""

from __future__ import annotations

import json
import time
from typing import Any

from faceops.monitoring.state import blocking_reason

from faceops.errors import FaceOpsError, MonitoringError

__all__ = ["MlflowState"]

_P = "faceops.monitor."
_K = "faceops.kfp."
_KIND = f"{_P}record"
_DETAIL_LIMIT = 7000


class MlflowState:
    """Decisions and retraining starts as tagged runs of ``experiment`` on the tracking server ``uri``
    (default: ``FACEOPS_MLFLOW_TRACKING_URI``)."""

    def __init__(self, uri: str | None, experiment: str = "faceops-monitoring") -> None:
        from faceops import registry

        self.uri = registry.tracking_uri(uri)
        self.experiment = experiment

    def close(self) -> None:
        """Nothing to release: every call is a request to the server."""

    def __enter__(self) -> MlflowState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decisions ----------------------------------------------------------------------------------------
    def record_decision(
        self,
        action: str,
        reasons: list[str],
        figures: dict[str, Any],
        *,
        window: tuple[float, float],
        model_version: str | None,
        report: str | None,
        ts: float | None = None,
    ) -> str:
        from faceops import registry

        ts = ts or time.time()
        tags = {
            _KIND: "decision",
            f"{_P}action": action,
            f"{_P}reasons": _json_list(reasons),
            f"{_P}ts": repr(ts),
            f"{_P}window_start": repr(window[0]),
            f"{_P}window_end": repr(window[1]),
            f"{_P}model_version": model_version,
            f"{_P}report": report,
        }
        payload = json.loads(json.dumps(figures, default=str))
        return self._call(
            "record a decision",
            registry.log_record,
            self.experiment,
            tags,
            start_time_ms=int(ts * 1000),
            run_name=f"decision: {action}",
            payload=payload,
            payload_name="decision.json",
            uri=self.uri,
        )

    def decisions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent decisions, newest first (their figures are read from each one's artifact)."""
        from faceops import registry

        rows = self._search("decision", limit)
        out = []
        for row in rows:
            tags = row["tags"]
            out.append(
                {
                    "id": row["run_id"],
                    "ts": _float(tags.get(f"{_P}ts")),
                    "window_start": _float(tags.get(f"{_P}window_start")),
                    "window_end": _float(tags.get(f"{_P}window_end")),
                    "model_version": tags.get(f"{_P}model_version"),
                    "action": tags.get(f"{_P}action"),
                    "reasons": json.loads(tags.get(f"{_P}reasons") or "[]"),
                    "figures": self._call("read a decision", registry.read_record, row["run_id"], "decision.json", self.uri) or {},
                    "report": tags.get(f"{_P}report"),
                }
            )
        return out

    # -- retraining starts --------------------------------------------------------------------------------
    def claim_trigger(self, reason: str, now: float, cooldown_s: float, retry_after_s: float) -> tuple[str | None, str]:
        """Reserve the right to start a retraining: ``(claim id, '')`` or ``(None, why not)``."""
        from faceops import registry

        earlier = self.triggers(20)
        why = blocking_reason(earlier, now, cooldown_s, retry_after_s)
        if why:
            return None, why
        claim = self._call(
            "claim a retraining start",
            registry.log_record,
            self.experiment,
            {_KIND: "trigger", f"{_P}status": "pending", f"{_P}ts": repr(now), f"{_P}reason": reason},
            start_time_ms=int(now * 1000),
            run_name="retraining start",
            uri=self.uri,
        )
        # Read back: another monitor's claim written meanwhile wins; ours is withdrawn.
        others = [t for t in self.triggers(20) if t["id"] != claim]
        why = blocking_reason(others, now, cooldown_s, retry_after_s)
        if why:
            self._tag(claim, {f"{_P}status": "withdrawn"})
            return None, why
        return claim, ""

    def finish_trigger(self, claim: str, ok: bool, detail: dict[str, Any], data_version: str | None = None) -> None:
        state = detail.get("state") or (detail.get("status") if detail.get("status") == "SUCCEEDED" else None)
        self._tag(
            claim,
            {
                f"{_P}status": "started" if ok else "failed",
                f"{_P}detail": json.dumps(detail, default=str)[:_DETAIL_LIMIT],
                f"{_P}data_version": data_version,
                f"{_K}run_id": detail.get("run_id") if ok else None,
                f"{_K}state": state if ok else None,
                f"{_K}host": detail.get("host"),
                f"{_K}namespace": detail.get("namespace"),
            },
        )

    def record_run_state(self, claim: str, state: str, error: str | None = None) -> None:
        self._tag(claim, {f"{_K}state": state, f"{_K}error": error or ""})

    def triggers(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent retraining starts (withdrawn claims left out), newest first."""
        out = []
        for row in self._search("trigger", limit):
            tags = row["tags"]
            if tags.get(f"{_P}status") == "withdrawn":
                continue
            try:
                detail = json.loads(tags.get(f"{_P}detail") or "{}")
            except ValueError:  # cut at the tag limit
                detail = {"run_id": tags.get(f"{_K}run_id")}
            out.append(
                {
                    "id": row["run_id"],
                    "ts": _float(tags.get(f"{_P}ts")) or row["start_time_ms"] / 1000,
                    "status": tags.get(f"{_P}status", "pending"),
                    "reason": tags.get(f"{_P}reason", ""),
                    "data_version": tags.get(f"{_P}data_version"),
                    "detail": detail,
                    "run_state": tags.get(f"{_K}state") or None,
                    "run_error": tags.get(f"{_K}error") or None,
                }
            )
        return out

    # -- plumbing -----------------------------------------------------------------------------------------
    def _search(self, kind: str, limit: int) -> list[dict[str, Any]]:
        from faceops import registry

        return self._call(  # type: ignore[no-any-return]
            f"read the {kind} records",
            registry.search_records,
            self.experiment,
            f"tags.`{_KIND}` = '{kind}'",
            max_results=limit,
            uri=self.uri,
        )

    def _tag(self, run_id: str, tags: dict[str, Any]) -> None:
        from faceops import registry

        self._call("update a retraining start", registry.tag_record, run_id, tags, self.uri)

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FaceOpsError as exc:
            raise MonitoringError(
                f"cannot {what} in the monitor state (MLflow experiment {self.experiment!r} at {self.uri}): {exc}"
            ) from exc


def _json_list(items: list[str]) -> str:
    """A JSON list within MLflow's tag limit: long items are cut, then the last ones dropped."""
    kept = [str(item)[:2000] for item in items]
    while kept and len(json.dumps(kept)) > _DETAIL_LIMIT:
        kept = kept[:-1]
    return json.dumps(kept)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
