"""The retraining rule both state stores apply (:func:`blocking_reason`), and the local store following a run."""

from __future__ import annotations

import pytest
from faceops.monitoring.state import SqliteState, blocking_reason, open_state

from faceops.errors import MonitoringError

HOUR = 3600.0


def _start(ts: float, status: str = "started", run_state: str | None = None, error: str | None = None, **detail):
    return {
        "id": str(ts),
        "ts": ts,
        "status": status,
        "reason": "drift",
        "data_version": None,
        "detail": {"run_id": f"run-{ts:.0f}", **detail},
        "run_state": run_state,
        "run_error": error,
    }


def test_nothing_before_allows_a_start():
    assert blocking_reason([], 1000.0, HOUR, 600) is None


@pytest.mark.parametrize("state", ["PENDING", "RUNNING", "CANCELING", "PAUSED"])
def test_a_running_retraining_blocks_even_after_the_cooldown(state):
    why = blocking_reason([_start(0.0, run_state=state)], 10 * HOUR, HOUR, 600)
    assert why is not None and why.startswith(f"a retraining is still running: run run-0 ({state}, started 10.0h ago)")


@pytest.mark.parametrize("state", [None, "SUCCEEDED", "FAILED", "NOT_FOUND"])
def test_any_other_start_blocks_for_the_cooldown_only(state):
    starts = [_start(0.0, run_state=state, error="step train failed" if state == "FAILED" else None)]
    why = blocking_reason(starts, HOUR - 60, HOUR, 600)
    assert why is not None and why.startswith("cooldown: a retraining started 59m ago (run run-0")
    assert ("FAILED: step train failed" in why) == (state == "FAILED")
    assert blocking_reason(starts, HOUR + 1, HOUR, 600) is None


def test_a_failed_start_waits_for_retry_after_unless_an_older_start_is_still_cooling_down():
    failed = {**_start(100.0, status="failed"), "detail": {"error": "PipelineUnavailable: no answer"}}
    why = blocking_reason([failed], 200.0, HOUR, 600)
    assert why is not None and why.startswith("waiting to retry: the last start failed 100s ago (PipelineUnavailable")
    assert blocking_reason([failed], 701.0, HOUR, 600) is None
    assert blocking_reason([failed, _start(0.0)], 200.0, HOUR, 600).startswith("cooldown")  # type: ignore[union-attr]


def test_sqlite_state_records_the_run_state(tmp_path):
    with SqliteState(tmp_path / "s.sqlite") as state:
        claim, _ = state.claim_trigger("drift", 1000.0, HOUR, 600)
        assert claim is not None
        state.finish_trigger(claim, True, {"run_id": "r1", "status": "SUBMITTED", "state": "PENDING"})
        assert state.triggers()[0]["run_state"] == "PENDING"
        again, why = state.claim_trigger("drift", 1000.0 + 2 * HOUR, HOUR, 600)
        assert again is None and "still running: run r1 (PENDING" in why
        state.record_run_state(claim, "FAILED", "OOMKilled")
        (row,) = state.triggers()
        assert (row["run_state"], row["run_error"]) == ("FAILED", "OOMKilled")
        later, _ = state.claim_trigger("drift", 1000.0 + 2 * HOUR, HOUR, 600)
        assert later is not None


def test_a_state_file_from_before_run_states_is_upgraded(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE triggers (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, status TEXT NOT NULL, "
            "reason TEXT NOT NULL, data_version TEXT, detail TEXT)"
        )
        db.execute("INSERT INTO triggers (ts, status, reason, detail) VALUES (5, 'started', 'drift', '{\"run_id\": \"x\"}')")
    db.close()
    with SqliteState(path) as state:
        (row,) = state.triggers()
        assert row["detail"] == {"run_id": "x"} and row["run_state"] is None


def test_unknown_backend_is_refused(tmp_path):
    with pytest.raises(MonitoringError, match="unknown monitor state backend 's3'"):
        open_state("s3", tmp_path / "x")
