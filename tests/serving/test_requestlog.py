"""The request log: rows survive a hard kill, sampling and retention work, raw images only when asked."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

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
    import numpy as np

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
