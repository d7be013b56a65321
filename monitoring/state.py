"""The monitor's memory: every decision with its reasons and figures, and the retraining starts (cooldown).

It also keeps the embeddings of logged images it computed (by model and request), so overlapping windows
(``--every 10m`` over a 1 h window) embed each stored image once. A small SQLite file shared by every monitor
process (a CronJob that overlaps its previous run, two replicas).
:meth:`MonitorState.claim_trigger` checks the cooldown and records a pending start in one ``BEGIN IMMEDIATE``
transaction, so of two monitors that see the same bad window at once only one starts a retraining.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from faceops.errors import MonitoringError

__all__ = ["MonitorState"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, window_start REAL, window_end REAL,
    model_version TEXT, action TEXT NOT NULL, reasons TEXT NOT NULL, figures TEXT NOT NULL, report TEXT);
CREATE TABLE IF NOT EXISTS embeddings (
    model TEXT NOT NULL, request_id TEXT NOT NULL, vectors BLOB NOT NULL, PRIMARY KEY (model, request_id));
CREATE TABLE IF NOT EXISTS triggers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL,
    data_version TEXT, detail TEXT);
"""


class MonitorState:
    """Decisions and retraining starts in SQLite at ``path`` (created on first use)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise MonitoringError(f"cannot open the monitor state {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MonitorState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- decisions
    # ---------------------------------------------------------------------------------------------
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
    ) -> int:
        cur = self._db.execute(
            "INSERT INTO decisions (ts, window_start, window_end, model_version, action, reasons, figures, "
            "report) "
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
        return int(cur.lastrowid or 0)

    def decisions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent decisions, newest first."""
        rows = self._db.execute(
            "SELECT id, ts, window_start, window_end, model_version, action, reasons, figures, "
            "report FROM decisions ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        keys = (
            "id",
            "ts",
            "window_start",
            "window_end",
            "model_version",
            "action",
            "reasons",
            "figures",
            "report",
        )
        out = []
        for row in rows:
            item = dict(zip(keys, row, strict=True))
            item["reasons"], item["figures"] = json.loads(item["reasons"]), json.loads(item["figures"])
            out.append(item)
        return out

    # -- embeddings of stored images -----------------------------------------------------------------
    def cached_embeddings(self, model: str, request_ids: list[str]) -> dict[str, np.ndarray]:
        """The cached ``(n_faces, 512)`` embeddings of these requests (no face: 0 rows)."""
        out = {}
        for start in range(0, len(request_ids), 500):
            chunk = request_ids[start : start + 500]
            rows = self._db.execute(
                f"SELECT request_id, vectors FROM embeddings WHERE model = ? AND request_id IN "
                f"({','.join('?' * len(chunk))})",
                (model, *chunk),
            ).fetchall()
            out.update({r: np.frombuffer(v, dtype=np.float32).reshape(-1, 512) for r, v in rows})
        return out

    def cache_embeddings(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
            [
                (model, r, np.asarray(v, dtype=np.float32).reshape(-1, 512).tobytes())
                for r, v in vectors.items()
            ],
        )

    # -- retraining starts
    # -------------------------------------------------------------------------------------
    def claim_trigger(
        self, reason: str, now: float, cooldown_s: float, retry_after_s: float
    ) -> tuple[int | None, str]:
        """Reserve the right to start a retraining; returns (claim id, '') or (None, why not).

        A start that succeeded (or is pending) blocks others for ``cooldown_s``; a failed one for
        ``retry_after_s``.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            last = self._db.execute(
                "SELECT ts, status, detail FROM triggers WHERE status != 'failed' ORDER BY ts DESC LIMIT 1"
            ).fetchone()
            if last and now - last[0] < cooldown_s:
                self._db.execute("COMMIT")
                detail = json.loads(last[2] or "{}")
                return None, (
                    f"cooldown: a retraining started {_ago(now - last[0])} ago (run "
                    f"{detail.get('run_id', '?')}, {last[1]}); next possible in "
                    f"{_ago(cooldown_s - now + last[0])}"
                )
            failed = self._db.execute(
                "SELECT ts, detail FROM triggers WHERE status = 'failed' ORDER BY ts DESC LIMIT 1"
            ).fetchone()
            if failed and now - failed[0] < retry_after_s and (not last or failed[0] > last[0]):
                self._db.execute("COMMIT")
                error = json.loads(failed[1] or "{}").get("error", "?")
                return None, (
                    f"waiting to retry: the last start failed {_ago(now - failed[0])} ago ({error}); "
                    f"next attempt in {_ago(retry_after_s - now + failed[0])}"
                )
            cur = self._db.execute(
                "INSERT INTO triggers (ts, status, reason) VALUES (?, 'pending', ?)", (now, reason)
            )
            self._db.execute("COMMIT")
            return int(cur.lastrowid or 0), ""
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def finish_trigger(
        self, claim: int, ok: bool, detail: dict[str, Any], data_version: str | None = None
    ) -> None:
        self._db.execute(
            "UPDATE triggers SET status = ?, detail = ?, data_version = ? WHERE id = ?",
            ("started" if ok else "failed", json.dumps(detail, default=str), data_version, claim),
        )

    def triggers(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, ts, status, reason, data_version, detail FROM triggers ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            {
                "id": r[0],
                "ts": r[1],
                "status": r[2],
                "reason": r[3],
                "data_version": r[4],
                "detail": json.loads(r[5] or "{}"),
            }
            for r in rows
        ]


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
