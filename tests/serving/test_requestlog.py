"""The request log: rows survive a hard kill, sampling and retention work, raw images only when asked."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from faceops.telemetry.requestlog import FaceRecord, RequestLog, RequestRecord, UnknownRequest

_WRITER = """
import os, sys, time
from pathlib import Path
from faceops.telemetry.requestlog import FaceRecord, RequestLog, RequestRecord
log = RequestLog(Path(sys.argv[1]))
for i in range(int(sys.argv[2])):
    log.append(RequestRecord(f"r{i}", "recognize", 200, 12.5, model_version="3",
    faces=[FaceRecord(0, 0.99, 80.0, 120.0, 300.0, "ann", 0.8, 0.3, "known", "ann")]))
print("written", flush=True)
time.sleep(60)  # killed here, with the connection open and nothing closed
"""


def test_rows_survive_a_hard_kill(tmp_path: Path) -> None:
    db = tmp_path / "requests.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db), "25"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 25
        row = conn.execute("SELECT * FROM faces WHERE request_id='r7'").fetchone()
    assert row == ("r7", 0, 0.99, 80.0, 120.0, 300.0, "ann", 0.8, 0.3, "known", "ann", None, None)


def test_sampling_retention_feedback_and_images(tmp_path: Path) -> None:
    never = RequestLog(tmp_path / "a.sqlite", sample_rate=0.0)
    assert not any(never.sampled() for _ in range(200))
    half = RequestLog(tmp_path / "b.sqlite", sample_rate=0.5)
    share = sum(half.sampled() for _ in range(2000)) / 2000
    assert 0.4 < share < 0.6

    log = RequestLog(tmp_path / "c.sqlite", retention_days=1.0)
    now = time.time()
    log.append(RequestRecord("old", "detect", 200, 5.0, ts=now - 2 * 86400, image=b"raw"))
    log.append(RequestRecord("new", "detect", 200, 5.0, ts=now, faces=[FaceRecord(0, 0.95, 50.0)]))
    log.add_feedback("old", "impostor")
    assert log.prune(now) == 1
    assert log.query("SELECT request_id, image FROM requests") == [("new", None)]  # images off by default
    assert log.query("SELECT COUNT(*) FROM feedback") == [(0,)]  # went with its request
    with pytest.raises(UnknownRequest, match="not in the request log"):
        log.add_feedback("old", "impostor")

    keep = RequestLog(tmp_path / "d.sqlite", store_images=True)
    keep.append(RequestRecord("x", "detect", 200, 5.0, image=b"\xff\xd8\xffjpeg"))
    assert keep.query("SELECT image FROM requests") == [(b"\xff\xd8\xffjpeg",)]
    assert keep.query("PRAGMA journal_mode") == [("wal",)]
    assert keep.query("PRAGMA synchronous") == [(2,)]  # FULL


def test_embeddings_only_when_asked_and_old_logs_gain_the_column(tmp_path: Path) -> None:
    vector = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    vector /= np.linalg.norm(vector)
    face = FaceRecord(0, 0.99, 60.0, embedding=vector)
    off = RequestLog(tmp_path / "off.sqlite")
    off.append(RequestRecord("a", "recognize", 200, 3.0, faces=[face]))
    assert off.query("SELECT embedding FROM faces") == [(None,)]
    on = RequestLog(tmp_path / "on.sqlite", store_embeddings=True)
    on.append(RequestRecord("a", "recognize", 200, 3.0, faces=[face]))
    blob = on.query("SELECT embedding FROM faces")[0][0]
    assert len(blob) == 1024
    assert np.allclose(np.frombuffer(blob, np.float16), vector, atol=1e-3)

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:  # a log written before the embedding column existed
        db.execute(
            "CREATE TABLE faces (request_id TEXT, face_index INTEGER, det_probability REAL, face_size REAL, "
            "brightness REAL, blur REAL, top1_identity TEXT, top1_similarity REAL, margin REAL, "
            "decision TEXT, predicted TEXT, track_id INTEGER, PRIMARY KEY (request_id, face_index))"
        )
        db.execute(
            "INSERT INTO faces VALUES ('x', 0, 0.9, 50, 100, 10, NULL, NULL, NULL, 'detected', NULL, NULL)"
        )
    migrated = RequestLog(old)
    assert migrated.query("SELECT request_id, embedding FROM faces") == [("x", None)]


def test_the_reader_returns_what_the_writer_wrote(tmp_path: Path) -> None:
    from faceops.telemetry.requestlog import RequestLogReader

    path = tmp_path / "requests.sqlite"
    log = RequestLog(path, store_images=True, store_embeddings=True)
    vector = np.linspace(-1, 1, 512, dtype=np.float32)
    t0 = 1_000_000.0
    log.append(
        RequestRecord(
            "a",
            "recognize",
            200,
            8.0,
            model_version="2",
            faces=[FaceRecord(0, 0.99, 80.0, 120.0, 300.0, "ann", 0.8, 0.3, "known", "ann", embedding=vector)],
            image=b"jpeg-a",
            ts=t0,
        )
    )
    log.append(RequestRecord("b", "recognize", 422, 2.0, model_version="3", error="no face", ts=t0 + 1))
    log.append(RequestRecord("late", "detect", 200, 2.0, faces=[FaceRecord(0, 0.9, 40.0)], ts=t0 + 100))
    log.add_feedback("a", "bob")
    log.add_feedback("a", "ann")
    log.close()

    with RequestLogReader(path) as reader:
        (face,) = reader.faces(t0, t0 + 10)
        assert (face.request_id, face.face_index, face.ts, face.endpoint, face.model_version) == (
            "a",
            0,
            t0,
            "recognize",
            "2",
        )
        assert (face.det_probability, face.brightness, face.margin, face.decision) == (0.99, 120.0, 0.3, "known")
        assert face.embedding is not None and len(face.embedding) == 1024
        assert reader.faces(t0, t0 + 10, model_version="3") == []
        assert [(f.truth, f.face_index) for f in reader.feedback(t0, t0 + 10)] == [("bob", 0), ("ann", 0)]
        assert reader.feedback(t0, t0 + 10, model_version="3") == []
        assert reader.request_counts(t0, t0 + 10) == (2, 1)
        assert reader.request_counts(t0, t0 + 10, model_version="2") == (1, 0)
        assert reader.model_versions(t0, t0 + 1000) == {"2": 1, "3": 1, "?": 1}
        assert reader.images(["a", "b", "missing"]) == {"a": b"jpeg-a"}
        assert [(c.request_id, c.truth, c.image) for c in reader.confirmed_images(t0, t0 + 10)] == [
            ("a", "bob", b"jpeg-a"),
            ("a", "ann", b"jpeg-a"),
        ]
        assert reader.confirmed_images(t0 + 1, t0 + 10) == []


def test_the_reader_refuses_another_schema_version_and_non_logs(tmp_path: Path) -> None:
    from faceops.errors import MonitoringError
    from faceops.telemetry.requestlog import SCHEMA_VERSION, RequestLogReader, SchemaVersionMismatch

    path = tmp_path / "requests.sqlite"
    RequestLog(path).close()
    with RequestLogReader(path) as reader:
        assert reader.request_counts(0, 1) == (0, 0)
    with sqlite3.connect(path) as db:  # a log written by a newer (or older) release
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaVersionMismatch) as info:
        RequestLogReader(path)
    assert (info.value.path, info.value.found, info.value.expected) == (path, SCHEMA_VERSION + 1, SCHEMA_VERSION)
    message = str(info.value)
    assert str(path) in message and f"version {SCHEMA_VERSION + 1}" in message
    assert f"reads version {SCHEMA_VERSION}" in message
    with pytest.raises(SchemaVersionMismatch):  # the writer does not stamp its own version over it either
        RequestLog(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1

    with pytest.raises(MonitoringError, match="request log not found"):
        RequestLogReader(tmp_path / "nothing.sqlite")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE requests (x)")
    with pytest.raises(MonitoringError, match="not a FaceOps request log .no table faces, feedback"):
        RequestLogReader(other)
    text = tmp_path / "text.sqlite"
    text.write_text("not a database at all " * 100)
    with pytest.raises(MonitoringError, match="not a readable request log|cannot read the request log"):
        RequestLogReader(text)
