"""The request log: one row per request and one per face, appended durably to SQLite for monitoring.

SQLite runs in WAL mode with ``synchronous=FULL``: a row is on disk when the request's insert returns, and a
crash (even a power cut) never loses or corrupts committed rows. No raw images are stored unless
``log_store_images`` is set; ``log_sample_rate`` logs a share of requests; rows older than the retention are
deleted by :meth:`RequestLog.prune` (the service calls it at start and hourly).

The columns are a contract with monitoring (``SCHEMA_VERSION``; add columns, never rename or drop)::

    requests(request_id TEXT PK, ts REAL (unix s), endpoint TEXT, model_version TEXT, model_id TEXT,
             threshold REAL, status INTEGER (HTTP), error TEXT, latency_ms REAL, n_faces INTEGER,
             image_width INTEGER, image_height INTEGER, image BLOB (only with log_store_images))
    faces(request_id TEXT, face_index INTEGER, det_probability REAL, face_size REAL (px),
          brightness REAL (0-255), blur REAL (Laplacian variance), top1_identity TEXT, top1_similarity REAL,
          margin REAL (top1 - top2), decision TEXT ('known', 'unknown', 'detected', 'same', 'different'),
          predicted TEXT, track_id INTEGER, embedding BLOB (512 float16, only with log_embeddings))
    feedback(request_id TEXT, face_index INTEGER, truth TEXT (an identity, 'impostor' or 'genuine'), ts REAL)
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceops.errors import FaceOpsError

__all__ = ["SCHEMA_VERSION", "FaceRecord", "RequestLog", "RequestRecord", "UnknownRequest"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, ts REAL NOT NULL, endpoint TEXT NOT NULL, model_version TEXT, model_id TEXT,
    threshold REAL, status INTEGER NOT NULL, error TEXT, latency_ms REAL NOT NULL, n_faces INTEGER NOT NULL,
    image_width INTEGER, image_height INTEGER, image BLOB);
CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts);
CREATE TABLE IF NOT EXISTS faces (
    request_id TEXT NOT NULL REFERENCES requests(request_id) ON DELETE CASCADE, face_index INTEGER NOT NULL,
    det_probability REAL, face_size REAL, brightness REAL, blur REAL, top1_identity TEXT,
    top1_similarity REAL,
    margin REAL, decision TEXT, predicted TEXT, track_id INTEGER, embedding BLOB,
    PRIMARY KEY (request_id, face_index));
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL REFERENCES requests(request_id) ON DELETE CASCADE, face_index INTEGER NOT NULL,
    truth TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id);
"""


class UnknownRequest(FaceOpsError):
    """Feedback for a request id that is not in the log (never logged, sampled out or pruned)."""


@dataclass
class FaceRecord:
    face_index: int
    det_probability: float
    face_size: float
    brightness: float | None = None
    blur: float | None = None
    top1_identity: str | None = None
    top1_similarity: float | None = None
    margin: float | None = None
    decision: str = "detected"
    predicted: str | None = None
    track_id: int | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)


@dataclass
class RequestRecord:
    request_id: str
    endpoint: str
    status: int
    latency_ms: float
    model_version: str | None = None
    model_id: str | None = None
    threshold: float | None = None
    error: str | None = None
    image_width: int | None = None
    image_height: int | None = None
    faces: list[FaceRecord] = field(default_factory=list)
    image: bytes | None = None
    ts: float = field(default_factory=time.time)


class RequestLog:
    """Append-only SQLite log shared by the service's threads (one connection, serialised by a lock)."""

    def __init__(
        self,
        path: Path,
        sample_rate: float = 1.0,
        retention_days: float = 30.0,
        store_images: bool = False,
        store_embeddings: bool = False,
    ) -> None:
        self.path = path
        self.sample_rate, self.retention_days, self.store_images = sample_rate, retention_days, store_images
        self.store_embeddings = store_embeddings
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(faces)")}
        if "embedding" not in columns:  # a log made before the column existed: add it, keep the rows
            self._db.execute("ALTER TABLE faces ADD COLUMN embedding BLOB")
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def sampled(self) -> bool:
        """Whether to log the next request (decided up front, so a sampled-out request costs nothing)."""
        return self.sample_rate >= 1.0 or random.random() < self.sample_rate

    def append(self, record: RequestRecord) -> None:
        """Write one request and its faces in one transaction (committed, and synced, on return)."""
        image = record.image if self.store_images else None
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        record.request_id,
                        record.ts,
                        record.endpoint,
                        record.model_version,
                        record.model_id,
                        record.threshold,
                        record.status,
                        record.error,
                        record.latency_ms,
                        len(record.faces),
                        record.image_width,
                        record.image_height,
                        image,
                    ),
                )
                self._db.executemany(
                    "INSERT INTO faces (request_id, face_index, det_probability, face_size, brightness, "
                    "blur, top1_identity, top1_similarity, margin, decision, predicted, track_id, embedding) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            record.request_id,
                            f.face_index,
                            f.det_probability,
                            f.face_size,
                            f.brightness,
                            f.blur,
                            f.top1_identity,
                            f.top1_similarity,
                            f.margin,
                            f.decision,
                            f.predicted,
                            f.track_id,
                            self._embedding(f),
                        )
                        for f in record.faces
                    ],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _embedding(self, face: FaceRecord) -> bytes | None:
        if not self.store_embeddings or face.embedding is None:
            return None
        return np.asarray(face.embedding, dtype=np.float16).tobytes()

    def add_feedback(self, request_id: str, truth: str, face_index: int = 0) -> None:
        """Record the ground truth of a logged request's face; raises :class:`UnknownRequest`."""
        with self._lock:
            row = self._db.execute(
                "SELECT n_faces, endpoint FROM requests WHERE request_id=?", (request_id,)
            ).fetchone()
            if row is None:
                raise UnknownRequest(
                    f"request {request_id!r} is not in the request log (never logged, sampled out "
                    "or older than the retention)"
                )
            n_faces, endpoint = row
            if endpoint != "verify" and not 0 <= face_index < max(n_faces, 1):
                raise UnknownRequest(
                    f"request {request_id!r} has {n_faces} face(s): face_index {face_index} is out of range"
                )
            self._db.execute(
                "INSERT INTO feedback VALUES (?,?,?,?)", (request_id, face_index, truth, time.time())
            )

    def prune(self, now: float | None = None) -> int:
        """Delete requests (with their faces and feedback) older than the retention; returns how many."""
        cutoff = (now or time.time()) - self.retention_days * 86400
        with self._lock:
            return self._db.execute("DELETE FROM requests WHERE ts < ?", (cutoff,)).rowcount

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Read rows (for tests and tools; monitoring opens the file itself)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
