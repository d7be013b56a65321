"""The request log in PostgreSQL: the same tables, columns and ``SCHEMA_VERSION`` as the SQLite file, for replicas.

Several service processes append to one database; monitoring reads it through
:class:`~faceops.telemetry.requestlog.RequestLogReader` given the database URL instead of a path. A row is
committed (PostgreSQL's ``synchronous_commit``: on the server's disk) when :meth:`PostgresRequestLog.append`
returns, as with SQLite. The schema version lives in ``faceops_schema`` (component ``request_log``): a database
written by another version is refused by both writer and reader with :class:`SchemaVersionMismatch`.

The writer connects lazily: a service starts while the database is down, and every call while it is down raises
:class:`~faceops.telemetry.postgres.DatabaseUnavailable` naming it; the next call after it returns works.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence

import numpy as np

from faceops.errors import MonitoringError
from faceops.telemetry.erasure import DELETIONS_PG, DeletionRecord, Likeness, chunks, count_doomed, doomed_requests
from faceops.telemetry.postgres import Connections, DatabaseUnavailable, to_pg
from faceops.telemetry.requestlog import (
    FACE_ENDPOINTS,
    SCHEMA_VERSION,
    FaceRecord,
    RequestRecord,
    SchemaVersionMismatch,
    UnknownRequest,
)

__all__ = ["PostgresRequestLog", "PostgresLogSource"]

_COMPONENT = "request_log"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS faceops_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, endpoint TEXT NOT NULL, model_version TEXT,
    model_id TEXT, threshold DOUBLE PRECISION, status INTEGER NOT NULL, error TEXT,
    latency_ms DOUBLE PRECISION NOT NULL, n_faces INTEGER NOT NULL, image_width INTEGER, image_height INTEGER,
    image BYTEA);
CREATE INDEX IF NOT EXISTS requests_ts ON requests(ts);
CREATE TABLE IF NOT EXISTS faces (
    request_id TEXT NOT NULL REFERENCES requests(request_id) ON DELETE CASCADE, face_index INTEGER NOT NULL,
    det_probability DOUBLE PRECISION, face_size DOUBLE PRECISION, brightness DOUBLE PRECISION,
    blur DOUBLE PRECISION, top1_identity TEXT, top1_similarity DOUBLE PRECISION, margin DOUBLE PRECISION,
    decision TEXT, predicted TEXT, track_id INTEGER, embedding BYTEA, PRIMARY KEY (request_id, face_index));
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT NOT NULL REFERENCES requests(request_id) ON DELETE CASCADE, face_index INTEGER NOT NULL,
    truth TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id);
"""
_SCHEMA_LOCK = 0x46414345  # pg_advisory_xact_lock key: replicas starting together create the tables once


def _found_version(conn, name: str) -> int | None:  # type: ignore[no-untyped-def]
    if conn.execute("SELECT to_regclass('faceops_schema')").fetchone()[0] is None:
        return None
    row = conn.execute("SELECT version FROM faceops_schema WHERE component = %s", (_COMPONENT,)).fetchone()
    return None if row is None else int(row[0])


class PostgresRequestLog:
    """The request log's writer on PostgreSQL (same methods as :class:`~faceops.telemetry.requestlog.RequestLog`).

    Args:
        url: the database URL (``postgresql://user:password@host:port/name``).
    """

    def __init__(
        self,
        url: str,
        sample_rate: float = 1.0,
        retention_days: float = 30.0,
        store_images: bool = False,
        store_embeddings: bool = False,
        connections: Connections | None = None,
    ) -> None:
        self.db = connections or Connections(url)
        self.path = self.db.name  # what messages name (no password)
        self.sample_rate, self.retention_days, self.store_images = sample_rate, retention_days, store_images
        self.store_embeddings = store_embeddings
        self._schema_ok = False
        self._schema_lock = threading.Lock()

    def _ensure_schema(self) -> None:
        if self._schema_ok:
            return
        with self._schema_lock, self.db.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            found = _found_version(conn, _COMPONENT)
            if found not in (None, SCHEMA_VERSION):
                raise SchemaVersionMismatch(self.db.name, found)
            conn.execute(_SCHEMA + DELETIONS_PG)
            conn.execute(
                "INSERT INTO faceops_schema VALUES (%s, %s) ON CONFLICT (component) DO NOTHING",
                (_COMPONENT, SCHEMA_VERSION),
            )
            self._schema_ok = True

    def check(self) -> None:
        """Connect and create the tables now; :class:`DatabaseUnavailable` if the server cannot be reached."""
        self._ensure_schema()

    def sampled(self) -> bool:
        return self.sample_rate >= 1.0 or random.random() < self.sample_rate

    def append(self, record: RequestRecord) -> None:
        """Write one request and its faces in one transaction (committed on the server on return)."""
        self._ensure_schema()
        image = record.image if self.store_images else None
        with self.db.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "INSERT INTO requests VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                (
                    record.request_id, record.ts, record.endpoint, record.model_version, record.model_id,
                    record.threshold, record.status, record.error, record.latency_ms, len(record.faces),
                    record.image_width, record.image_height, image,
                ),
            )  # fmt: skip
            if record.faces:
                cur.executemany(
                    "INSERT INTO faces (request_id, face_index, det_probability, face_size, brightness, blur, "
                    "top1_identity, top1_similarity, margin, decision, predicted, track_id, embedding) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    [
                        (
                            record.request_id, f.face_index, f.det_probability, f.face_size, f.brightness, f.blur,
                            f.top1_identity, f.top1_similarity, f.margin, f.decision, f.predicted, f.track_id,
                            self._embedding(f),
                        )
                        for f in record.faces
                    ],
                )  # fmt: skip

    def _embedding(self, face: FaceRecord) -> bytes | None:
        if not self.store_embeddings or face.embedding is None:
            return None
        return np.asarray(face.embedding, dtype=np.float16).tobytes()

    def add_feedback(self, request_id: str, truth: str, face_index: int = 0) -> None:
        """Record the ground truth of a logged request's face (see ``RequestLog.add_feedback``)."""
        self._ensure_schema()
        with self.db.connection() as conn:
            row = conn.execute("SELECT n_faces, endpoint FROM requests WHERE request_id = %s", (request_id,)).fetchone()
            if row is None:
                raise UnknownRequest(
                    f"request {request_id!r} is not in the request log (never logged, sampled out or older than the retention)"
                )
            n_faces, endpoint = row
            if endpoint not in FACE_ENDPOINTS:
                raise UnknownRequest(
                    f"request {request_id!r} is a {endpoint!r} request: feedback is for the faces of "
                    f"{', '.join(FACE_ENDPOINTS)} requests"
                )
            if not 0 <= face_index < max(n_faces, 1):
                raise UnknownRequest(f"request {request_id!r} has {n_faces} face(s): face_index {face_index} is out of range")
            conn.execute("INSERT INTO feedback VALUES (%s,%s,%s,%s)", (request_id, face_index, truth, time.time()))

    def prune(self, now: float | None = None) -> int:
        """Delete requests (with faces and feedback) older than the retention; 0 while the database is down."""
        cutoff = (now or time.time()) - self.retention_days * 86400
        try:
            self._ensure_schema()
            with self.db.connection() as conn:
                return conn.execute("DELETE FROM requests WHERE ts < %s", (cutoff,)).rowcount
        except DatabaseUnavailable:
            return 0  # pruning is housekeeping: the next hourly run does it

    def forget(self, identity: str, likeness: Likeness | None = None) -> dict[str, int]:
        """Delete every request that names or shows ``identity``, in one transaction (see ``RequestLog.forget``)."""
        self._ensure_schema()
        with self.db.connection() as conn, conn.transaction():

            def read(sql: str, params: Sequence[object]) -> list[tuple]:
                return conn.execute(to_pg(sql), list(params)).fetchall()

            ids = doomed_requests(read, identity, likeness)
            removed = count_doomed(read, ids)
            for chunk in chunks(ids):
                conn.execute("DELETE FROM requests WHERE request_id = ANY(%s)", (chunk,))
        return removed

    def record_deletion(self, record: DeletionRecord) -> None:
        """Append the audit record of an erasure (committed on the server on return)."""
        self._ensure_schema()
        with self.db.connection() as conn:
            conn.execute("INSERT INTO deletions (ts, actor, salt, identity_hash, removed) VALUES (%s,%s,%s,%s,%s)", record.row())

    def deletions(self) -> list[DeletionRecord]:
        """Every erasure's audit record, oldest first."""
        self._ensure_schema()
        with self.db.connection() as conn:
            rows = conn.execute("SELECT ts, actor, salt, identity_hash, removed FROM deletions ORDER BY id").fetchall()
        return [DeletionRecord.from_row(r) for r in rows]

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Read rows with SQLite-style ``?`` placeholders (for tests and tools)."""
        self._ensure_schema()
        with self.db.connection() as conn:
            return conn.execute(to_pg(sql), list(params)).fetchall()

    def close(self) -> None:
        self.db.close()


class PostgresLogSource:
    """What :class:`~faceops.telemetry.requestlog.RequestLogReader` reads from a database (read-only use).

    Raises:
        MonitoringError: the database cannot be reached or holds no request log.
        SchemaVersionMismatch: the log has another schema version.
    """

    def __init__(self, url: str) -> None:
        self.db = Connections(url, size=1)
        self.name = self.db.name
        try:
            with self.db.connection() as conn:
                found = _found_version(conn, _COMPONENT)
            if found is None:
                raise MonitoringError(f"{self.name} holds no FaceOps request log (no faceops_schema row for it)")
            if found != SCHEMA_VERSION:
                raise SchemaVersionMismatch(self.name, found)
        except DatabaseUnavailable as exc:
            self.db.close()
            raise MonitoringError(f"cannot read the request log: {exc}") from exc
        except BaseException:
            self.db.close()
            raise

    def read(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        try:
            with self.db.connection() as conn:
                return conn.execute(to_pg(sql), list(params)).fetchall()
        except DatabaseUnavailable as exc:
            raise MonitoringError(f"cannot read the request log: {exc}") from exc

    def close(self) -> None:
        self.db.close()
