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
    # the decision says how the features drifted, and the trigger's payload carries it into the run config
    changes = {c["feature"]: c for c in degraded["drift_changes"]}
    assert changes["brightness"]["direction"] == "down" and changes["brightness"]["ratio"] < 0.6
    assert changes["blur"]["direction"] == "down" and changes["blur"]["ratio"] < 1  # sharpness down: blurrier
    target = degraded["trigger"]["drift"]["target"]
    assert target["brightness_ratio"] == changes["brightness"]["ratio"]
    assert degraded["trigger"]["drift"]["gate_conditions"][0] == "underexposure"
    assert degraded["trigger"]["status"] == "SUCCEEDED" and degraded["trigger"]["backend"] == "local"
    assert all(d["mlflow_run_id"] for d in result["decisions"] if d["action"] != "empty")  # reports in MLflow
    # a challenger was registered, trained on the data version with the feedback-confirmed photos, and gated
    assert int(result["newest_version"]) == int(result["first_champion"]) + 1
    # the run followed the drift: dark and blurred copies, the illumination step chosen by measurement on the
    # drifted slice (kept only where it beat none there), and the gate judged the drifted conditions
    plan = result["drift_plan"]
    assert plan["augment"]["dark_prob"] > 0 and plan["gate_conditions"][0] == "underexposure", plan
    measured = plan["illumination_measurement"]["candidates"]
    chosen = plan["preprocess_illumination"]
    assert chosen == plan["illumination"]
    if chosen != "none":
        assert measured[chosen]["drifted_tar"] > measured["none"]["drifted_tar"], plan
    gate = result["gate"]
    assert gate["champion"] == result["first_champion"], gate
    repair = result["repair"]
    if repair["repaired"]:
        # the repair: the challenger passed the gate, the service swapped to it, and the degraded traffic's FRR
        # is back within 10 points of normal traffic's; the drift goes on, but nothing retrains again
        assert gate["promoted"] is True and result["champion"] == result["newest_version"] == result["service_version"]
        assert repair["degraded_frr_after"] - repair["normal_frr"] <= 0.10, repair
        assert again["action"] in ("ok", "cooldown", "alert"), again["reasons"]
    else:
        # not repairable by augmentation and illumination (benchmarks/results/drift_repair.json measures why):
        # the monitor says so and alerts without starting another retraining for the same drift
        assert again["action"] == "unrepairable", (repair, again["reasons"])
        assert any(r.startswith("known unrepairable") for r in again["reasons"]), again["reasons"]
    assert again["trigger"] is None
    # the webhook got exactly one critical retraining alert (then at most warnings)
    posted = [(b["action"], b["severity"], b["model_version"]) for b in receiver.bodies]
    assert posted[0] == ("retrain", "critical", result["first_champion"]), posted
    assert all(severity != "critical" for _, severity, _ in posted[1:]), posted
    assert receiver.bodies[0]["trigger"]["status"] == "SUCCEEDED"
    print(json.dumps({"gate": gate, "again": again["action"], "repair": repair, "timings_s": result["timings_s"]}))
