"""The loop closed end to end at its smallest: serve the champion, replay traffic, degrade it, alert through a
real webhook, retrain with kfp.local, gate, swap the service (benchmarks/closed_loop.py: full size)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_closed_loop(tmp_path, monkeypatch):
    from benchmarks.closed_loop import run_loop
    from faceops.settings import get_settings
    from tests.monitoring.test_alerts import Receiver

    for name in (
        "FACEOPS_CACHE_DIR",
        "FACEOPS_OUTPUT_DIR",
        "FACEOPS_MLFLOW_TRACKING_URI",
        "FACEOPS_MLFLOW_ARTIFACTS",
    ):
        monkeypatch.setenv(name, "")  # restored after the test; run_loop points them into tmp_path
    with Receiver() as receiver:
        try:
            result = run_loop(
                tmp_path,
                per_person=6,
                traffic=3,
                strangers=3,
                sinks=[{"type": "webhook", "url": receiver.url, "retries": 0}],
            )
        finally:
            get_settings.cache_clear()
    normal, degraded, again = result["decisions"]
    assert normal["action"] == "ok", normal["reasons"]
    assert degraded["action"] == "retrain", degraded["reasons"]
    assert {"brightness", "blur"} <= set(degraded["drift"])
    assert degraded["trigger"]["status"] == "SUCCEEDED" and degraded["trigger"]["backend"] == "local"
    assert all(d["mlflow_run_id"] for d in result["decisions"] if d["action"] != "empty")  # reports in MLflow
    # a challenger was registered, trained on the data version with the feedback-confirmed photos, and gated
    assert int(result["newest_version"]) > int(result["first_champion"])
    gate = result["gate"]
    assert isinstance(gate.get("promoted"), bool) and gate.get("reason")
    if gate["promoted"]:  # the service follows the alias
        assert result["champion"] == result["newest_version"] == result["service_version"]
        assert result["swap_seconds"] is not None
    else:
        assert result["champion"] == result["first_champion"] == result["service_version"]
    # the degradation goes on: at most an alert, never a second retraining within the cooldown
    assert again["action"] in ("cooldown", "ok", "insufficient_data"), again["reasons"]
    posted = [b["action"] for b in receiver.bodies]
    assert posted == ["retrain"] + (["cooldown"] if again["action"] == "cooldown" else [])
    print(json.dumps({"gate": gate, "again": again["action"], "timings_s": result["timings_s"]}))
