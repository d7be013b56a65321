"""The monitor's memory: every decision with its reasons and figures, and the retraining starts (cooldown, the
state of the pipeline run each one started).

Two stores behind one protocol, :class:`MonitorState`, chosen by ``state_backend`` in the monitor's config
(:func:`open_state`):

``mlflow`` (:class:`~faceops.monitoring.state_mlflow.MlflowState`, for a cluster)
    Records in an MLflow experiment of their own (``faceops-monitoring``) on the tracking server the monitor
    already needs for the champion and its reference: one run per decision and one per retraining start,
    their fields as tags (queried with ``search_runs``), a decision's figures as a JSON artifact. A CronJob's
    pods share nothing, and MLflow is the one durable, already-authorised store every pod reaches; the records
    show up in the MLflow UI beside the training runs they started. An S3 object would need credentials of
    its own and conditional writes for the cooldown, and holds no history to query.
``local`` (:class:`SqliteState`, one machine)
    A SQLite file (``state_path``) shared by every monitor process of the machine (``make run``, the closed
    loop, ``--every`` in a terminal); :meth:`SqliteState.claim_trigger` checks the cooldown and records a
    pending start in one ``BEGIN IMMEDIATE`` transaction.

Both apply one rule (:func:`blocking_reason`): a start that is pending or started blocks others for the
cooldown, and for as long as its pipeline run is known to be PENDING/RUNNING; a start that failed blocks
for ``retry_after``; a run that ended FAILED counts as a start (the cooldown applies, the decision says it
failed).

The embeddings of logged images the monitor computed (:class:`EmbeddingCache`) are a cache, not state: a
local SQLite file, lost with the pod at no cost but time. They are embeddings of people's faces, so the cache
keeps them no longer than ``embedding_cache_max_age`` (7 days by default) nor longer than the request they came
from: each monitor run drops the entries older than that and those whose request left the request log (erased
with an identity, or older than the log's retention) (:meth:`EmbeddingCache.prune`).
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from faceops.errors import MonitoringError

__all__ = [
    "ACTIVE_RUN_STATES",
    "FAILED_RUN_STATES",
    "FINAL_RUN_STATES",
    "EmbeddingCache",
    "MonitorState",
    "SqliteState",
    "blocking_reason",
    "open_state",
]

# Kubeflow Pipelines v2beta1 run states (and NOT_FOUND: the server no longer knows the run).
ACTIVE_RUN_STATES = frozenset({"PENDING", "RUNNING", "CANCELING", "PAUSED"})
FINAL_RUN_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED", "ERROR", "NOT_FOUND"})
FAILED_RUN_STATES = frozenset({"FAILED", "CANCELED", "ERROR", "NOT_FOUND"})


class MonitorState(Protocol):
    """Decisions and retraining starts (a trigger record: ``id``, ``ts``, ``status`` pending/started/failed,
    ``reason``, ``data_version``, ``detail`` (what the trigger returned), ``run_state``, ``run_error``)."""

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
    ) -> str: ...

    def decisions(self, limit: int = 50) -> list[dict[str, Any]]: ...

    def claim_trigger(self, reason: str, now: float, cooldown_s: float, retry_after_s: float) -> tuple[str | None, str]: ...

    def finish_trigger(self, claim: str, ok: bool, detail: dict[str, Any], data_version: str | None = None) -> None: ...

    def record_run_state(self, claim: str, state: str, error: str | None = None) -> None: ...

    def triggers(self, limit: int = 50) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> MonitorState: ...

    def __exit__(self, *exc: object) -> None: ...


def open_state(
    backend: str, path: str | Path, *, tracking_uri: str | None = None, experiment: str = "faceops-monitoring"
) -> MonitorState:
    """The configured store: ``'local'`` (SQLite at ``path``) or ``'mlflow'`` (``experiment`` on
    ``tracking_uri``)."""
    if backend == "mlflow":
        from faceops.monitoring.state_mlflow import MlflowState

        return MlflowState(tracking_uri, experiment)
    if backend == "local":
        return SqliteState(path)
    raise MonitoringError(f"unknown monitor state backend {backend!r}: use 'local' or 'mlflow'")


def blocking_reason(triggers: list[dict[str, Any]], now: float, cooldown_s: float, retry_after_s: float) -> str | None:
    """Why no retraining may start now given the earlier starts (any order), or ``None``."""
    ordered = sorted(triggers, key=lambda t: t["ts"], reverse=True)
    last = next((t for t in ordered if t["status"] in ("pending", "started")), None)
    if last is not None:
        run_id = (last.get("detail") or {}).get("run_id", "?")
        state = last.get("run_state")
        if state in ACTIVE_RUN_STATES:
            return (
                f"a retraining is still running: run {run_id} ({state}, started {_ago(now - last['ts'])} ago); "
                "no other start until it ends"
            )
        if now - last["ts"] < cooldown_s:
            how = state or last["status"]
            if state in FAILED_RUN_STATES and last.get("run_error"):
                how = f"{state}: {str(last['run_error'])[:200]}"
            return (
                f"cooldown: a retraining started {_ago(now - last['ts'])} ago (run {run_id}, {how}); next "
                f"possible in {_ago(cooldown_s - now + last['ts'])}"
            )
    failed = next((t for t in ordered if t["status"] == "failed"), None)
    if failed and now - failed["ts"] < retry_after_s and (last is None or failed["ts"] > last["ts"]):
        error = (failed.get("detail") or {}).get("error", "?")
        return (
            f"waiting to retry: the last start failed {_ago(now - failed['ts'])} ago ({error}); "
            f"next attempt in {_ago(retry_after_s - now + failed['ts'])}"
        )
    return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, window_start REAL, window_end REAL,
    model_version TEXT, action TEXT NOT NULL, reasons TEXT NOT NULL, figures TEXT NOT NULL, report TEXT);
CREATE TABLE IF NOT EXISTS triggers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
    data_version TEXT, detail TEXT);
"""
_DECISION_KEYS = ("id", "ts", "window_start", "window_end", "model_version", "action", "reasons", "figures", "report")


def _connect(path: Path, schema: str, what: str) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(schema)
    except (OSError, sqlite3.DatabaseError) as exc:
        raise MonitoringError(f"cannot open the {what} {path}: {exc}") from exc
    return db


class SqliteState:
    """Decisions and retraining starts in SQLite at ``path`` (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = _connect(self.path, _SCHEMA, "monitor state")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(triggers)")}
        for column in ("run_state", "run_error"):  # files written before runs were followed lack them
            if column not in columns:
                self._db.execute(f"ALTER TABLE triggers ADD COLUMN {column} TEXT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        cur = self._db.execute(
            "INSERT INTO decisions (ts, window_start, window_end, model_version, action, reasons, figures, report) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (
                ts or time.time(),
                window[0],
                window[1],
                model_version,
                action,
                json.dumps(reasons),
                json.dumps(figures, default=str),
                report,
            ),
        )
        return str(cur.lastrowid or 0)

    def decisions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent decisions, newest first."""
        rows = self._db.execute(f"SELECT {', '.join(_DECISION_KEYS)} FROM decisions ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        out = []
        for row in rows:
            item = dict(zip(_DECISION_KEYS, row, strict=True))
            item["id"] = str(item["id"])
            item["reasons"], item["figures"] = json.loads(item["reasons"]), json.loads(item["figures"])
            out.append(item)
        return out

    def claim_trigger(self, reason: str, now: float, cooldown_s: float, retry_after_s: float) -> tuple[str | None, str]:
        """Reserve the right to start a retraining: ``(claim id, '')`` or ``(None, why not)``
        (:func:`blocking_reason`), atomically across the processes sharing the file."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            why = blocking_reason(self._triggers(20), now, cooldown_s, retry_after_s)
            if why:
                self._db.execute("COMMIT")
                return None, why
            cur = self._db.execute("INSERT INTO triggers (ts, status, reason) VALUES (?, 'pending', ?)", (now, reason))
            self._db.execute("COMMIT")
            return str(cur.lastrowid or 0), ""
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def finish_trigger(self, claim: str, ok: bool, detail: dict[str, Any], data_version: str | None = None) -> None:
        run_state = detail.get("state") or (detail.get("status") if detail.get("status") in FINAL_RUN_STATES else None)
        self._db.execute(
            "UPDATE triggers SET status = ?, detail = ?, data_version = ?, run_state = ? WHERE id = ?",
            ("started" if ok else "failed", json.dumps(detail, default=str), data_version, run_state if ok else None, int(claim)),
        )

    def record_run_state(self, claim: str, state: str, error: str | None = None) -> None:
        self._db.execute("UPDATE triggers SET run_state = ?, run_error = ? WHERE id = ?", (state, error, int(claim)))

    def triggers(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent retraining starts, newest first."""
        return self._triggers(limit)

    def _triggers(self, limit: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, ts, status, reason, data_version, detail, run_state, run_error FROM triggers ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {
                "id": str(r[0]),
                "ts": r[1],
                "status": r[2],
                "reason": r[3],
                "data_version": r[4],
                "detail": json.loads(r[5] or "{}"),
                "run_state": r[6],
                "run_error": r[7],
            }
            for r in rows
        ]


class EmbeddingCache:
    """Embeddings of stored request images by model and request, so overlapping windows embed each image once
    (a local SQLite file; the local state keeps it in its own file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = _connect(
            self.path,
            "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, request_id TEXT NOT NULL, "
            "vectors BLOB NOT NULL, PRIMARY KEY (model, request_id));",
            "embedding cache",
        )
        if "ts" not in {row[1] for row in self._db.execute("PRAGMA table_info(embeddings)")}:
            self._db.execute("ALTER TABLE embeddings ADD COLUMN ts REAL")  # a cache from before: NULL, pruned first

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cached_embeddings(self, model: str, request_ids: list[str]) -> dict[str, np.ndarray]:
        """The cached ``(n_faces, D)`` embeddings of these requests (no face: 0 rows)."""
        out = {}
        for start in range(0, len(request_ids), 500):
            chunk = request_ids[start : start + 500]
            rows = self._db.execute(
                f"SELECT request_id, vectors FROM embeddings WHERE model = ? AND request_id IN ({','.join('?' * len(chunk))})",
                (model, *chunk),
            ).fetchall()
            out.update({r: _vectors(v) for r, v in rows})
        return out

    def cache_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO embeddings (model, request_id, vectors, ts) VALUES (?, ?, ?, ?)",
            [(model, r, _blob(v), time.time()) for r, v in vectors.items()],
        )

    def prune(self, max_age_s: float, known: Callable[[list[str]], set[str]] | None = None, now: float | None = None) -> int:
        """Drop entries cached more than ``max_age_s`` ago (or at an unknown time), and with ``known`` (the
        request ids still in the request log, of those given) those whose request is gone; how many went."""
        cutoff = (now or time.time()) - max_age_s
        removed = self._db.execute("DELETE FROM embeddings WHERE ts IS NULL OR ts < ?", (cutoff,)).rowcount
        if known is None:
            return removed
        ids = [r[0] for r in self._db.execute("SELECT DISTINCT request_id FROM embeddings").fetchall()]
        alive = known(ids)
        gone = [i for i in ids if i not in alive]
        for start in range(0, len(gone), 500):
            chunk = gone[start : start + 500]
            removed += self._db.execute(
                f"DELETE FROM embeddings WHERE request_id IN ({','.join('?' * len(chunk))})", chunk
            ).rowcount
        return removed


def _blob(vectors: np.ndarray) -> bytes:
    """``(n, D)`` float32 as ``.npy`` bytes: the shape travels with the vectors (D is the model's)."""
    buffer = io.BytesIO()
    vectors = np.asarray(vectors, dtype=np.float32)
    np.save(buffer, vectors.reshape(len(vectors), vectors.size // max(len(vectors), 1)), allow_pickle=False)
    return buffer.getvalue()


def _vectors(blob: bytes) -> np.ndarray:
    if blob[:6] == b"\x93NUMPY":
        return np.load(io.BytesIO(blob), allow_pickle=False)
    return np.frombuffer(blob, dtype=np.float32).reshape(-1, 512)  # a cache written before: 512-d rows


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
