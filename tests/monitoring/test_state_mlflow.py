"""The monitor's state on a real MLflow server: records, the claim rule across processes' instances, failures."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from faceops.monitoring.state_mlflow import MlflowState

from faceops.errors import MonitoringError

pytestmark = pytest.mark.integration

HOUR = 3600.0


@pytest.fixture(scope="module")
def mlflow_uri(start_mlflow_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    uri, proc = start_mlflow_server(tmp_path_factory.mktemp("state-mlflow"))
    yield uri
    stop_server(proc)


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server and reap it (a loaded machine may take more than the session fixture's 20 s)."""
    proc.terminate()
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def test_decisions_and_starts_round_trip(mlflow_uri):
    experiment = "monitoring-round-trip"
    with MlflowState(mlflow_uri, experiment) as state:
        assert state.triggers() == [] and state.decisions() == []  # the experiment does not exist yet
        figures = {"window": {"faces": 80}, "drift": {"share": 0.86, "drifted": ["blur"]}}
        state.record_decision("ok", ["no alarm"], figures, window=(10.0, 20.0), model_version="3", report="r", ts=20.0)
        long_reasons = [f"reason {i}: " + "x" * 3000 for i in range(5)]  # more than a tag holds
        state.record_decision("alert", long_reasons, {}, window=(20.0, 30.0), model_version="3", report=None, ts=30.0)
        claim, why = state.claim_trigger("drift: 6 of 7", 30.0, HOUR, 600)
        assert claim is not None and why == ""
        state.finish_trigger(
            claim,
            True,
            {"run_id": "kfp-1", "status": "SUBMITTED", "state": "PENDING", "host": "http://kfp", "namespace": "team-a"},
            "rev-1",
        )
    with MlflowState(mlflow_uri, experiment) as fresh:  # another process, nothing kept in between
        alert, ok = fresh.decisions()
        assert (ok["action"], ok["reasons"], ok["figures"], ok["model_version"]) == ("ok", ["no alarm"], figures, "3")
        assert (ok["window_start"], ok["window_end"], ok["ts"]) == (10.0, 20.0, 20.0)
        assert alert["action"] == "alert" and 0 < len(alert["reasons"]) < 5 and alert["reasons"][0].startswith("reason 0")
        (start,) = fresh.triggers()
        assert (start["status"], start["run_state"], start["data_version"]) == ("started", "PENDING", "rev-1")
        assert start["detail"]["run_id"] == "kfp-1" and start["reason"] == "drift: 6 of 7" and start["ts"] == 30.0
        again, why = fresh.claim_trigger("drift", 30.0 + 2 * HOUR, HOUR, 600)
        assert again is None and why.startswith("a retraining is still running: run kfp-1 (PENDING")
        fresh.record_run_state(claim, "FAILED", "step 'train' failed")
        assert fresh.triggers()[0]["run_error"] == "step 'train' failed"
        later, _ = fresh.claim_trigger("drift", 30.0 + 2 * HOUR, HOUR, 600)
        assert later is not None


def test_of_simultaneous_claims_at_most_one_stands(mlflow_uri):
    experiment = "monitoring-race"
    for round_ in range(3):
        now = 1000.0 + round_ * 10 * HOUR  # each round after the previous one's cooldown
        barrier = threading.Barrier(2)
        results: list[tuple[str | None, str]] = []

        def claim(results=results, barrier=barrier, now=now) -> None:
            with MlflowState(mlflow_uri, experiment) as state:
                barrier.wait()
                results.append(state.claim_trigger("drift", now, HOUR, 600))

        threads = [threading.Thread(target=claim) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert len(results) == 2
        standing = [c for c, _ in results if c is not None]
        assert len(standing) <= 1, results
        assert all(why.startswith("cooldown") for c, why in results if c is None), results
        with MlflowState(mlflow_uri, experiment) as state:  # withdrawn claims are not starts
            live = [t for t in state.triggers() if t["ts"] == now]
            assert [t["id"] for t in live] == standing


def test_an_unreachable_server_is_a_clear_monitoring_error(tmp_path: Path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state = MlflowState(f"http://127.0.0.1:{port}")
    with pytest.raises(MonitoringError, match=f"MLflow experiment 'faceops-monitoring' at http://127.0.0.1:{port}"):
        state.claim_trigger("drift", 0.0, HOUR, 600)
