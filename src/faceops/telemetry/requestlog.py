"""The request log: one row per request and one per face, appended durably to SQLite for monitoring.

:class:`RequestLog` is the one writer (the service), :class:`RequestLogReader` the one reader (monitoring): both
hold the SQL, and the reader refuses a log whose ``SCHEMA_VERSION`` (SQLite's ``user_version``) is not this one.
Replicas share one log in PostgreSQL instead (same tables and version: :mod:`faceops.telemetry.requestlog_postgres`);
the reader reads either, given a path or a ``postgresql://`` URL.

SQLite runs in WAL mode with ``synchronous=FULL``: a row is on disk when the request's insert returns, and a
crash (even a power cut) never loses or corrupts committed rows. No raw images are stored unless
``log_store_images`` is set; ``log_sample_rate`` logs a share of requests; rows older than the retention
(``log_retention_days``, 30 by default) are deleted by :meth:`RequestLog.prune` (the service calls it at start and
hourly). :meth:`RequestLog.forget` erases one person (:mod:`faceops.telemetry.erasure`), and the ``deletions``
table keeps the audit record of each erasure (not pruned: it holds no personal data).

The columns are a contract with monitoring (``SCHEMA_VERSION``; add columns, never rename or drop)::

    requests(request_id TEXT PK, ts REAL (unix s), endpoint TEXT (the route: 'detect', 'recognize', 'verify',
             'stream', 'enroll', 'add_images', 'list_identities', 'get_identity', 'delete_identity',
             'feedback'), model_version TEXT, model_id TEXT, threshold REAL,
             status INTEGER (the HTTP status the client got), error TEXT, latency_ms REAL, n_faces INTEGER,
             image_width INTEGER, image_height INTEGER, image BLOB (only with log_store_images))
    faces(request_id TEXT, face_index INTEGER, det_probability REAL, face_size REAL (px),
          brightness REAL (0-255), blur REAL (Laplacian variance), top1_identity TEXT, top1_similarity REAL,
          margin REAL (top1 - top2), decision TEXT ('known', 'unknown', 'detected', 'same', 'different'),
          predicted TEXT, track_id INTEGER, embedding BLOB (the model's D float16, only with log_embeddings))
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
from typing import Any, Protocol

import numpy as np

from faceops.errors import FaceOpsError, MonitoringError
from faceops.telemetry.erasure import DELETIONS_SQLITE, DeletionRecord, Likeness, chunks, count_doomed, doomed_requests

__all__ = [
    "SCHEMA_VERSION",
    "ConfirmedImage",
    "FACE_ENDPOINTS",
    "FaceRecord",
    "FeedbackRow",
    "LoggedFace",
    "RequestLog",
    "RequestLogReader",
    "RequestLogWriter",
    "RequestRecord",
    "SchemaVersionMismatch",
    "UnknownRequest",
]

SCHEMA_VERSION = 1
FACE_ENDPOINTS = ("detect", "recognize", "verify", "stream")  # the requests whose faces take feedback
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


class SchemaVersionMismatch(MonitoringError):
    """A request log written with another ``SCHEMA_VERSION`` than this FaceOps reads and writes.

    Attributes:
        path: the log file (or the database, without password).
        found: its schema version (SQLite ``user_version``, or the ``faceops_schema`` row in PostgreSQL).
        expected: :data:`SCHEMA_VERSION`.
    """

    def __init__(self, path: Path | str, found: int, expected: int = SCHEMA_VERSION) -> None:
        super().__init__(
            f"{path}: request log schema version {found}, but this FaceOps reads version {expected} "
            "(the log was written by another FaceOps release; monitor it with that release or start a new log)"
        )
        self.path, self.found, self.expected = path, found, expected


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


class RequestLogWriter(Protocol):
    """What the service writes through: :class:`RequestLog` (SQLite) or ``PostgresRequestLog``."""

    store_images: bool

    def sampled(self) -> bool: ...
    def append(self, record: RequestRecord) -> None: ...
    def add_feedback(self, request_id: str, truth: str, face_index: int = 0) -> None: ...
    def prune(self, now: float | None = None) -> int: ...
    def forget(self, identity: str, likeness: Likeness | None = None) -> dict[str, int]: ...
    def record_deletion(self, record: DeletionRecord) -> None: ...
    def deletions(self) -> list[DeletionRecord]: ...
    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]: ...
    def close(self) -> None: ...


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
        self._db.execute("PRAGMA secure_delete=ON")  # deleted rows (erasure, retention) are overwritten, not left
        found = self._db.execute("PRAGMA user_version").fetchone()[0]
        if found not in (0, SCHEMA_VERSION):  # 0: a new file (or one from before the version was stamped)
            self._db.close()
            raise SchemaVersionMismatch(path, found)
        self._db.executescript(_SCHEMA + DELETIONS_SQLITE)
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
        """Record the ground truth of a logged request's face.

        Raises:
            UnknownRequest: the request is not in the log, is not a face request (enrolment, feedback, ...), or
                has no face ``face_index`` (a request without faces takes index 0, for what it missed).
        """
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
            if endpoint not in FACE_ENDPOINTS:
                raise UnknownRequest(
                    f"request {request_id!r} is a {endpoint!r} request: feedback is for the faces of "
                    f"{', '.join(FACE_ENDPOINTS)} requests"
                )
            if not 0 <= face_index < max(n_faces, 1):
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

    def forget(self, identity: str, likeness: Likeness | None = None) -> dict[str, int]:
        """Delete every request that names or shows ``identity`` (see :mod:`faceops.telemetry.erasure`), with
        its faces, feedback, image and embeddings, in one transaction; how many of each went."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                read = self._read_locked
                ids = doomed_requests(read, identity, likeness)
                removed = count_doomed(read, ids)
                for chunk in chunks(ids):
                    self._db.execute(f"DELETE FROM requests WHERE request_id IN ({','.join('?' * len(chunk))})", chunk)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            # secure_delete zeroes the freed pages; the checkpoint moves them into the file and empties the WAL,
            # whose older frames still hold the rows: after this, the erased bytes are nowhere in either file.
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    def _read_locked(self, sql: str, params: Sequence[object]) -> list[tuple]:
        return self._db.execute(sql, tuple(params)).fetchall()

    def record_deletion(self, record: DeletionRecord) -> None:
        """Append the audit record of an erasure (committed and synced on return)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO deletions (ts, actor, salt, identity_hash, removed) VALUES (?,?,?,?,?)", record.row()
            )

    def deletions(self) -> list[DeletionRecord]:
        """Every erasure's audit record, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT ts, actor, salt, identity_hash, removed FROM deletions ORDER BY id")
            return [DeletionRecord.from_row(r) for r in rows.fetchall()]

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Read rows (for tests and tools; monitoring reads through :class:`RequestLogReader`)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class LoggedFace:
    """One logged face with its request's time, endpoint and model version.

    The feature values (``det_probability`` to ``predicted``) are as stored: SQLite does not enforce column
    types, so a damaged row may hold text in a number column; check them before use.
    """

    request_id: str
    face_index: int
    ts: float
    endpoint: str
    model_version: str | None
    det_probability: Any
    face_size: Any
    brightness: Any
    blur: Any
    top1_similarity: Any
    margin: Any
    decision: Any
    predicted: Any
    embedding: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class FeedbackRow:
    """A ground truth given for a logged face (values as stored, see :class:`LoggedFace`)."""

    request_id: str
    face_index: Any
    truth: Any
    ts: float


@dataclass(frozen=True)
class ConfirmedImage:
    """The stored image of a single-face ``recognize`` request and the truth given for its face."""

    request_id: str
    image: bytes = field(repr=False)
    truth: Any
    ts: float


_TABLES = ("requests", "faces", "feedback")
_FACE_COLUMNS = (  # LoggedFace's fields but the embedding, in order
    "f.request_id", "f.face_index", "r.ts", "r.endpoint", "r.model_version", "f.det_probability", "f.face_size",
    "f.brightness", "f.blur", "f.top1_similarity", "f.margin", "f.decision", "f.predicted",
)
_WINDOW = "r.ts >= ? AND r.ts < ?"


class RequestLogReader:
    """Read-only access to a request log (WAL lets it read beside the service's writes without blocking them).

    Args:
        path: the SQLite file the service writes, or the ``postgresql://`` URL of the database replicas share
            (a URL that went through :class:`~pathlib.Path` is repaired).

    Raises:
        MonitoringError: the file is missing, not SQLite, or lacks the log's tables; the database cannot be
            reached or holds no log.
        SchemaVersionMismatch: the log has another schema version than :data:`SCHEMA_VERSION`.
    """

    def __init__(self, path: str | Path) -> None:
        from faceops.telemetry.postgres import is_database_url

        self._pg: Any = None
        if is_database_url(path):
            from faceops.telemetry.requestlog_postgres import PostgresLogSource

            self._pg = PostgresLogSource(str(path))
            self.path: Path | str = self._pg.name
            self._has_embedding = True
            return
        self.path = Path(path)
        if not self.path.is_file():
            raise MonitoringError(f"request log not found: {self.path} (is the service writing its log there?)")
        try:
            self._db = sqlite3.connect(f"file:{self.path.resolve()}?mode=ro", uri=True, timeout=10)
        except sqlite3.DatabaseError as exc:
            raise MonitoringError(f"{self.path} is not a readable request log: {exc}") from exc
        try:
            tables = {r[0] for r in self._read("SELECT name FROM sqlite_master WHERE type='table'")}
            missing = set(_TABLES) - tables
            if missing:
                raise MonitoringError(
                    f"{self.path} is not a FaceOps request log (no table {', '.join(sorted(missing))})"
                )
            found = self._read("PRAGMA user_version")[0][0]
            if found != SCHEMA_VERSION:
                raise SchemaVersionMismatch(self.path, found)
            self._has_embedding = "embedding" in {r[1] for r in self._read("PRAGMA table_info(faces)")}
        except BaseException:
            self._db.close()
            raise

    def __enter__(self) -> RequestLogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        else:
            self._db.close()

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        if self._pg is not None:
            return self._pg.read(sql, params)
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise MonitoringError(f"cannot read the request log {self.path}: {exc}") from exc

    @staticmethod
    def _where(start: float, end: float, model_version: str | None) -> tuple[str, tuple[object, ...]]:
        if model_version is None:
            return _WINDOW, (start, end)
        return f"{_WINDOW} AND r.model_version = ?", (start, end, model_version)

    def faces(self, start: float, end: float, model_version: str | None = None) -> list[LoggedFace]:
        """The faces of the requests in ``[start, end)`` (unix seconds), in time order."""
        where, params = self._where(start, end, model_version)
        rows = self._read(
            f"SELECT {', '.join(_FACE_COLUMNS)}, {'f.embedding' if self._has_embedding else 'NULL'} "
            f"FROM faces f JOIN requests r ON r.request_id = f.request_id WHERE {where} "
            "ORDER BY r.ts, f.request_id, f.face_index",
            params,
        )
        names = [column.split(".")[1] for column in _FACE_COLUMNS]
        return [
            LoggedFace(**dict(zip(names, row[:-1], strict=True)), embedding=row[-1] if isinstance(row[-1], bytes) else None)
            for row in rows
        ]

    def feedback(self, start: float, end: float, model_version: str | None = None) -> list[FeedbackRow]:
        """The feedback on the requests of ``[start, end)``, oldest first (so later feedback can replace it)."""
        where, params = self._where(start, end, model_version)
        rows = self._read(
            "SELECT fb.request_id, fb.face_index, fb.truth, fb.ts FROM feedback fb "
            f"JOIN requests r ON r.request_id = fb.request_id WHERE {where} ORDER BY fb.ts",
            params,
        )
        return [FeedbackRow(*row) for row in rows]

    def request_counts(self, start: float, end: float, model_version: str | None = None) -> tuple[int, int]:
        """``(requests, failed requests)`` of ``[start, end)``; failed: an HTTP error status (400 and over)."""
        where, params = self._where(start, end, model_version)
        total, failed = self._read(
            f"SELECT COUNT(*), SUM(CASE WHEN r.status >= 400 THEN 1 ELSE 0 END) FROM requests r WHERE {where}", params
        )[0]
        return int(total or 0), int(failed or 0)

    def model_versions(self, start: float, end: float) -> dict[str, int]:
        """Requests per model version in ``[start, end)`` (``'?'``: logged without a version)."""
        rows = self._read(
            f"SELECT COALESCE(r.model_version, '?'), COUNT(*) FROM requests r WHERE {_WINDOW} GROUP BY 1",
            (start, end),
        )
        return {str(version): int(n) for version, n in rows}

    def images(self, request_ids: Sequence[str]) -> dict[str, bytes]:
        """The stored images (``log_store_images``) of these requests; requests without one are left out."""
        out: dict[str, bytes] = {}
        ids = list(request_ids)
        for i in range(0, len(ids), 500):  # under SQLite's limit on parameters per statement
            chunk = ids[i : i + 500]
            rows = self._read(
                f"SELECT request_id, image FROM requests WHERE request_id IN ({','.join('?' * len(chunk))}) "
                "AND image IS NOT NULL",
                chunk,
            )
            out.update({str(r): bytes(b) for r, b in rows if isinstance(b, (bytes, memoryview)) and len(b)})
        return out

    def known_requests(self, request_ids: Sequence[str]) -> set[str]:
        """Those of ``request_ids`` still in the log (not erased, not older than the retention)."""
        ids, out = list(request_ids), set[str]()
        for chunk in chunks(ids):
            rows = self._read(f"SELECT request_id FROM requests WHERE request_id IN ({','.join('?' * len(chunk))})", chunk)
            out.update(str(r[0]) for r in rows)
        return out

    def confirmed_images(self, start: float, end: float) -> list[ConfirmedImage]:
        """Single-face ``recognize`` requests of ``[start, end)`` with a stored image and feedback on the
        face, oldest feedback first."""
        rows = self._read(
            "SELECT r.request_id, r.image, fb.truth, fb.ts FROM requests r "
            f"JOIN feedback fb ON fb.request_id = r.request_id WHERE {_WINDOW} AND r.endpoint = 'recognize' "
            "AND r.n_faces = 1 AND fb.face_index = 0 AND r.image IS NOT NULL ORDER BY fb.ts",
            (start, end),
        )
        return [ConfirmedImage(str(r), bytes(b), t, ts) for r, b, t, ts in rows if isinstance(b, bytes)]
