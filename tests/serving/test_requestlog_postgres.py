"""The request log in PostgreSQL: the same rows as SQLite through the same reader, the same schema-version rule,
two writers at once, and a lost server as a clear error that heals (a real PostgreSQL on 127.0.0.1)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import psycopg
import pytest

from faceops.errors import MonitoringError
from faceops.telemetry.postgres import DatabaseUnavailable, database_url, redacted, to_pg
from faceops.telemetry.requestlog import (
    SCHEMA_VERSION,
    FaceRecord,
    RequestLog,
    RequestLogReader,
    RequestRecord,
    SchemaVersionMismatch,
    UnknownRequest,
)
from faceops.telemetry.requestlog_postgres import PostgresRequestLog
from tests.serving.serving_helpers import free_port

T0 = 1_000_000.0


def _fill(log) -> None:  # type: ignore[no-untyped-def]
    vector = np.linspace(-1, 1, 512, dtype=np.float32)
    log.append(
        RequestRecord(
            "a", "recognize", 200, 8.0, model_version="2",
            faces=[FaceRecord(0, 0.99, 80.0, 120.0, 300.0, "ann", 0.8, 0.3, "known", "ann", embedding=vector)],
            image=b"jpeg-a", ts=T0,
        )
    )  # fmt: skip
    log.append(RequestRecord("b", "recognize", 422, 2.0, model_version="3", error="no face", ts=T0 + 1))
    log.append(RequestRecord("late", "detect", 200, 2.0, faces=[FaceRecord(0, 0.9, 40.0)], ts=T0 + 100))
    log.add_feedback("a", "bob")
    log.add_feedback("a", "ann")


def _read_all(target) -> dict:  # type: ignore[no-untyped-def]
    with RequestLogReader(target) as reader:
        return {
            "faces": [(f.request_id, f.face_index, f.ts, f.endpoint, f.model_version, f.det_probability,
                       f.brightness, f.margin, f.decision, f.embedding) for f in reader.faces(T0, T0 + 10)],
            "faces_v3": reader.faces(T0, T0 + 10, model_version="3"),
            "feedback": [(f.request_id, f.truth, f.face_index) for f in reader.feedback(T0, T0 + 10)],
            "counts": reader.request_counts(T0, T0 + 10),
            "counts_v2": reader.request_counts(T0, T0 + 10, model_version="2"),
            "versions": reader.model_versions(T0, T0 + 1000),
            "images": reader.images(["a", "b", "missing"]),
            "confirmed": [(c.request_id, c.truth, c.image) for c in reader.confirmed_images(T0, T0 + 10)],
        }  # fmt: skip


def test_postgres_and_sqlite_logs_read_the_same(postgres, tmp_path: Path) -> None:
    url = postgres.new_database()
    sqlite_log = RequestLog(tmp_path / "requests.sqlite", store_images=True, store_embeddings=True)
    pg_log = PostgresRequestLog(url, store_images=True, store_embeddings=True)
    for log in (sqlite_log, pg_log):
        _fill(log)
        with pytest.raises(UnknownRequest, match="'nope' is not in the request log"):
            log.add_feedback("nope", "ann")
        with pytest.raises(UnknownRequest, match="face_index 3 is out of range"):
            log.add_feedback("a", "ann", face_index=3)
        assert log.query("SELECT request_id FROM requests WHERE endpoint = ? ORDER BY ts", ("recognize",)) == [
            ("a",),
            ("b",),
        ]
    sqlite_log.close()
    from_pg, from_sqlite = _read_all(url), _read_all(tmp_path / "requests.sqlite")
    assert from_pg == from_sqlite
    assert from_pg["counts"] == (2, 1) and from_pg["versions"] == {"2": 1, "3": 1, "?": 1}
    assert from_pg["faces"][0][-1] is not None and len(from_pg["faces"][0][-1]) == 1024  # float16 embedding
    # Monitoring's config holds the log as a Path, which folds '//': the reader repairs the URL.
    assert _read_all(Path(url)) == from_pg
    assert pg_log.prune(now=T0 + 30 * 86400 + 50) == 2  # "a" and "b" (with their faces and feedback)
    assert pg_log.query("SELECT COUNT(*) FROM feedback") == [(0,)]
    pg_log.close()


def test_two_writers_share_one_log(postgres) -> None:
    url = postgres.new_database()
    writers = [PostgresRequestLog(url) for _ in range(2)]  # two replicas (each creates the tables: once)

    def write(n: int) -> None:
        for i in range(50):
            writers[n].append(RequestRecord(f"{n}-{i}", "detect", 200, 1.0, faces=[FaceRecord(0, 0.9, 40.0)]))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writers[0].query("SELECT COUNT(*) FROM requests") == [(100,)]
    assert writers[1].query("SELECT COUNT(*) FROM faces") == [(100,)]
    for writer in writers:
        writer.close()


def test_another_schema_version_is_refused_by_writer_and_reader(postgres) -> None:
    url = postgres.new_database()
    first = PostgresRequestLog(url)
    first.check()
    first.close()
    with psycopg.connect(url, autocommit=True) as conn:  # a log written by another release
        conn.execute("UPDATE faceops_schema SET version = %s WHERE component = 'request_log'", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaVersionMismatch, match=f"version {SCHEMA_VERSION + 1}, but this FaceOps reads"):
        RequestLogReader(url)
    second = PostgresRequestLog(url)
    with pytest.raises(SchemaVersionMismatch):
        second.check()
    second.close()
    with pytest.raises(MonitoringError, match="holds no FaceOps request log"):
        RequestLogReader(postgres.new_database())


def test_a_lost_server_is_a_clear_error_and_the_writer_recovers(postgres) -> None:
    url = postgres.new_database().replace("faceops@", "faceops:secret@")
    log = PostgresRequestLog(url)
    log.append(RequestRecord("before", "detect", 200, 1.0))
    postgres.stop()
    try:
        with pytest.raises(DatabaseUnavailable) as info:
            log.append(RequestRecord("during", "detect", 200, 1.0))
        assert f"127.0.0.1:{postgres.port}" in str(info.value) and "secret" not in str(info.value)
        assert log.prune() == 0  # housekeeping waits for the next run
    finally:
        postgres.start()
    log.append(RequestRecord("after", "detect", 200, 1.0))
    assert log.query("SELECT request_id FROM requests ORDER BY ts") == [("before",), ("after",)]
    log.close()
    nowhere = f"postgresql://faceops@127.0.0.1:{free_port()}/x"
    with pytest.raises(MonitoringError, match="cannot read the request log: the database"):
        RequestLogReader(nowhere)


def test_url_helpers() -> None:
    assert database_url(Path("postgresql://u:p@h:5/db")) == "postgresql://u:p@h:5/db"
    assert redacted("postgresql://u:p@h:5/db") == "postgresql://u@h:5/db"
    assert to_pg("SELECT COALESCE(x, '?') FROM t WHERE a = ? AND b LIKE '%'") == (
        "SELECT COALESCE(x, '?') FROM t WHERE a = %s AND b LIKE '%%'"
    )
