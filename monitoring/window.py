"""A window of the service's request log: per-face features, labelled faces, and what could not be used.

The log is the SQLite file ``serving/requestlog.py`` writes (its column contract, ``SCHEMA_VERSION`` 1). It is
opened read-only, so the monitor never blocks or changes the service's writes (WAL lets readers run beside the
writer). SQLite does not enforce column types, so every value is checked: a face row with a missing or
out-of-range feature (text in a number column, a probability above 1, a NaN) is left out and listed in
``Window.rejected`` with the reason, never allowed to crash the run or skew the statistics.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from faceops.errors import MonitoringError
from faceops.telemetry.reference import FEATURES
from faceops.telemetry.stats import LabelledFace

__all__ = ["Window", "read_images", "read_window"]

_DECISIONS = {"known", "unknown", "detected", "same", "different"}
# (low, high, may be NULL) of each logged number; the same definitions as the service (faceops.face.quality).
_RANGES: dict[str, tuple[float, float, bool]] = {
    "det_probability": (0.0, 1.0, False),
    "face_size": (0.0, 1e5, False),
    "brightness": (0.0, 255.0, True),
    "blur": (0.0, 1e7, True),
    "top1_similarity": (-1.0001, 1.0001, True),
    "margin": (-1e-6, 2.0001, True),
}
_FACES_SQL = """
SELECT f.request_id, f.face_index, r.ts, r.endpoint, r.model_version, f.det_probability, f.face_size,
       f.brightness, f.blur, f.top1_similarity, f.margin, f.decision, f.predicted, {embedding}
FROM faces f JOIN requests r ON r.request_id = f.request_id
WHERE r.ts >= ? AND r.ts < ? {version} ORDER BY r.ts, f.request_id, f.face_index
"""
_FEEDBACK_SQL = """
SELECT fb.request_id, fb.face_index, fb.truth FROM feedback fb JOIN requests r ON r.request_id = fb.request_id
WHERE r.ts >= ? AND r.ts < ? {version} ORDER BY fb.ts
"""


@dataclass
class Window:
    """The usable faces of ``[start, end)`` and their feedback."""

    start: float
    end: float
    faces: pd.DataFrame
    labelled: list[LabelledFace]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    failed_requests: int = 0
    model_versions: dict[str, int] = field(default_factory=dict)
    embeddings: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "faces": len(self.faces),
            "labelled": len(self.labelled),
            "rejected_rows": len(self.rejected),
            "rejected_examples": self.rejected[:10],
            "model_versions": self.model_versions,
            "embeddings": 0 if self.embeddings is None else len(self.embeddings),
        }


def _connect(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise MonitoringError(f"request log not found: {path} (is the service writing its log there?)")
    try:
        db = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=10)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise MonitoringError(f"{path} is not a readable request log: {exc}") from exc
    missing = {"requests", "faces", "feedback"} - tables
    if missing:
        db.close()
        raise MonitoringError(f"{path} is not a FaceOps request log (no table {', '.join(sorted(missing))})")
    return db


def _number(value: Any, name: str) -> float:
    low, high, nullable = _RANGES[name]
    if value is None:
        if nullable:
            return math.nan
        raise ValueError(f"{name} is missing")
    if isinstance(value, (bytes, str, bool)):
        raise ValueError(f"{name} is not a number ({str(value)[:40]!r})")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{name} {number!r} is outside [{low:g}, {high:g}]")
    return number


def _embedding(blob: Any) -> np.ndarray | None:
    if not isinstance(blob, bytes) or len(blob) not in (512 * 4, 512 * 2):
        return None
    vector = np.frombuffer(blob, dtype=np.float32 if len(blob) == 2048 else np.float16).astype(np.float32)
    return vector if np.all(np.isfinite(vector)) else None


def read_window(path: str | Path, start: float, end: float, model_version: str | None = None) -> Window:
    """Read ``[start, end)`` (unix seconds) of the request log at ``path``, optionally one model version only.

    Raises:
        MonitoringError: the log is missing, not a SQLite file, or lacks the service's tables.
    """
    path = Path(path)
    db = _connect(path)
    try:
        columns = {r[1] for r in db.execute("PRAGMA table_info(faces)")}
        version_sql, params = (
            ("AND r.model_version = ?", (start, end, model_version)) if model_version else ("", (start, end))
        )
        face_rows = db.execute(
            _FACES_SQL.format(
                embedding="f.embedding" if "embedding" in columns else "NULL", version=version_sql
            ),
            params,
        ).fetchall()
        feedback = db.execute(_FEEDBACK_SQL.format(version=version_sql), params).fetchall()
        counts = db.execute(
            f"SELECT COUNT(*), SUM(status != 200) FROM requests r WHERE r.ts >= ? AND r.ts < ? {version_sql}",
            params,
        ).fetchone()
        versions = dict(
            db.execute(
                "SELECT COALESCE(model_version, '?'), COUNT(*) FROM requests "
                "WHERE ts >= ? AND ts < ? GROUP BY 1",
                (start, end),
            ).fetchall()
        )
    except sqlite3.DatabaseError as exc:
        raise MonitoringError(f"cannot read the request log {path}: {exc}") from exc
    finally:
        db.close()
    records, rejected, vectors = [], [], []
    for row in face_rows:
        request_id, face_index, ts, endpoint, version = row[:5]
        try:
            values = {name: _number(v, name) for name, v in zip(_RANGES, row[5:11], strict=True)}
            decision = row[11]
            if decision not in _DECISIONS:
                raise ValueError(f"decision {str(decision)[:40]!r} is not one of {sorted(_DECISIONS)}")
        except (TypeError, ValueError) as exc:
            rejected.append({"request_id": str(request_id), "face_index": face_index, "problem": str(exc)})
            continue
        values["unknown"] = {"unknown": 1.0, "known": 0.0}.get(decision, math.nan)
        records.append(
            {
                "request_id": request_id,
                "face_index": face_index,
                "ts": ts,
                "endpoint": endpoint,
                "model_version": version,
                **values,
                "decision": decision,
                "predicted": row[12],
            }
        )
        vector = _embedding(row[13])
        if vector is not None:
            vectors.append(vector)
    faces = pd.DataFrame.from_records(
        records,
        columns=[
            "request_id",
            "face_index",
            "ts",
            "endpoint",
            "model_version",
            *FEATURES,
            "decision",
            "predicted",
        ],
    )
    return Window(
        start=start,
        end=end,
        faces=faces,
        labelled=_labelled(faces, feedback),
        rejected=rejected,
        requests=int(counts[0] or 0),
        failed_requests=int(counts[1] or 0),
        model_versions={str(k): int(v) for k, v in versions.items()},
        embeddings=np.stack(vectors) if vectors else None,
    )


def _labelled(faces: pd.DataFrame, feedback: list[tuple]) -> list[LabelledFace]:
    """The latest feedback of each usable face (verify: of face 0, which carries the pair's decision)."""
    truth = {(str(r), int(i)): str(t) for r, i, t in feedback if isinstance(t, str) and isinstance(i, int)}
    out = []
    for row in faces.itertuples(index=False):
        key = (str(row.request_id), int(row.face_index))
        if key in truth and not (row.endpoint == "verify" and row.face_index != 0):
            out.append(LabelledFace(row.endpoint, row.decision, row.predicted, truth[key]))
    return out


def read_images(path: str | Path, request_ids: list[str]) -> dict[str, bytes]:
    """The stored images (``log_store_images``) of these requests; requests without one are left out."""
    if not request_ids:
        return {}
    db = _connect(Path(path))
    try:
        marks = ",".join("?" * len(request_ids))
        rows = db.execute(
            f"SELECT request_id, image FROM requests WHERE request_id IN ({marks}) AND image IS NOT NULL",
            request_ids,
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise MonitoringError(f"cannot read images from the request log {path}: {exc}") from exc
    finally:
        db.close()
    return {str(r): bytes(b) for r, b in rows if isinstance(b, (bytes, memoryview)) and len(b)}
