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

from serving.requestlog import FaceRecord, RequestLog, RequestRecord, UnknownRequest

_WRITER = """
import os, sys, time
from pathlib import Path
from serving.requestlog import FaceRecord, RequestLog, RequestRecord
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
    assert row == ("r7", 0, 0.99, 80.0, 120.0, 300.0, "ann", 0.8, 0.3, "known", "ann", None)


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
