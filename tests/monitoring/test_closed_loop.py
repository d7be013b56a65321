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
    assert int(result["newest_version"]) == int(result["first_champion"]) + 1
    # the challenger passes the gate (the pretrained layers are kept, so it is as accurate) and is promoted; the
    # service follows the alias
    gate = result["gate"]
    assert gate["promoted"] is True and gate["champion"] == result["first_champion"], gate
    assert gate["reason"].endswith("within tolerances"), gate
    assert result["champion"] == result["newest_version"] == result["service_version"]
    assert result["swap_seconds"] is not None
    # the degradation goes on under the new champion: an alert, never a second retraining within the cooldown
    assert again["action"] == "cooldown", again["reasons"]
    assert again["trigger"] is None and any(r.startswith("cooldown: a retraining started") for r in again["reasons"])
    # the webhook got exactly one critical retraining alert, then one cooldown warning
    posted = [(b["action"], b["severity"], b["model_version"]) for b in receiver.bodies]
    assert posted == [
        ("retrain", "critical", result["first_champion"]),
        ("cooldown", "warning", result["champion"]),
    ], posted
    assert receiver.bodies[0]["trigger"]["status"] == "SUCCEEDED"
    print(json.dumps({"gate": gate, "again": again["action"], "timings_s": result["timings_s"]}))
