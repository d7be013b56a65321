"""The monitor on real traffic: normal photos pass; dark, blurred photos and strangers raise drift and
accuracy/FAR alarms, start one retraining, and a run of bad windows starts no other (cooldown, retry wait)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from faceops.monitoring.config import DriftConfig, FileSinkConfig, MonitorConfig, PolicyConfig
from faceops.monitoring.monitor import run_once
from faceops.monitoring.state import SqliteState

from tests.monitoring.conftest import RecordingTrigger


def make_config(
    tmp_path: Path, log: Path, reference_dir: Path, bundle_dir: Path | None = None, **policy
) -> MonitorConfig:
    return MonitorConfig(
        request_log=log,
        reference_dir=reference_dir,
        bundle_dir=bundle_dir,
        reports_dir=tmp_path / "reports",
        state_path=tmp_path / "state.sqlite",
        log_to_mlflow=False,
        policy=PolicyConfig(**{"min_faces": 10, "min_feedback": 10, **policy}),
        drift=DriftConfig(min_embeddings=10),
        alerts=[FileSinkConfig(path=tmp_path / "alerts.jsonl")],
    )


def _alerts(tmp_path: Path) -> list[dict]:
    path = tmp_path / "alerts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_normal_traffic_passes_and_degraded_traffic_retrains_once(
    tmp_path, traffic_log, reference_dir, mon_bundle_dir, recording_trigger
):
    config = make_config(tmp_path, traffic_log["path"], reference_dir, mon_bundle_dir)
    start, end = traffic_log["normal"]
    normal = run_once(config, since=start, now=end, trigger=recording_trigger)
    assert normal.action == "ok", normal.reasons
    assert recording_trigger.calls == [] and _alerts(tmp_path) == []
    assert normal.figures["drift"]["share"] < 0.5

    start, end = traffic_log["degraded"]
    bad = run_once(config, since=start, now=end, trigger=recording_trigger)
    assert bad.action == "retrain", bad.reasons
    kinds = {a["kind"] for a in bad.figures["policy"]["alarms"]}
    assert "drift" in kinds and kinds & {"accuracy", "far"}, bad.reasons
    drifted = bad.figures["drift"]["drifted"]
    assert {"brightness", "blur"} <= set(drifted), drifted
    embeddings = next(f for f in bad.figures["drift"]["features"] if f["feature"] == "embeddings")
    assert embeddings["drifted"] is not None and embeddings["current_n"] >= 10  # re-embedded stored images
    assert len(recording_trigger.calls) == 1 and "drift" in recording_trigger.calls[0][0]
    # what drifted and how: in the decision, and as the target the retraining is given
    changes = {c["feature"]: c for c in bad.figures["drift"]["changes"]}
    assert changes["brightness"]["direction"] == "down" and changes["brightness"]["change"] < 0
    assert changes["blur"]["direction"] == "down" and changes["blur"]["ratio"] < 1  # sharpness down
    target = recording_trigger.drifts[0]
    assert target["brightness_ratio"] == changes["brightness"]["ratio"] < 0.85, target
    assert target["blur_ratio"] == changes["blur"]["ratio"] and "brightness" in target["drifted"]
    assert bad.trigger["drift"]["gate_conditions"] == ["underexposure", "gaussian_blur"]
    perf = bad.figures["performance"]
    assert perf["accuracy"]["value"] < normal.figures["performance"]["accuracy"]["value"]
    assert 0 <= perf["far"]["low"] <= perf["far"]["value"] <= perf["far"]["high"] <= 1
    for name in ("report.json", "report.html", "drift.html", "features.png"):
        assert (bad.report_dir / name).stat().st_size > 0, name
    alert = _alerts(tmp_path)[-1]
    assert alert["action"] == "retrain" and alert["trigger"]["run_id"] == "run-1"

    # The next bad windows (the degradation goes on) start nothing: one retraining per cooldown.
    for k in range(2):
        again = run_once(config, since=start, now=end + 60 * (k + 1), trigger=recording_trigger)
        assert again.action == "cooldown", again.reasons
        assert any("cooldown" in r for r in again.reasons)
    assert len(recording_trigger.calls) == 1
    with SqliteState(config.state_path) as state:
        decisions = state.decisions()
    assert [d["action"] for d in decisions] == ["cooldown", "cooldown", "retrain", "ok"]
    assert all(d["reasons"] for d in decisions) and decisions[2]["figures"]["performance"]["labelled"] > 0


def test_unreachable_backend_fails_clearly_and_retries_later(tmp_path, traffic_log, reference_dir):
    config = make_config(tmp_path, traffic_log["path"], reference_dir, retry_after="10m")
    trigger = RecordingTrigger(fail=True)
    start, end = traffic_log["degraded"]
    first = run_once(config, since=start, now=end, trigger=trigger)
    assert first.action == "trigger_failed"
    assert any("PipelineUnavailable" in r and "127.0.0.1:9" in r for r in first.reasons)
    assert _alerts(tmp_path)[-1]["severity"] == "critical"
    second = run_once(config, since=start, now=end + 60, trigger=trigger)
    assert second.action == "retry_wait" and len(trigger.calls) == 1
    trigger.fail = False
    third = run_once(config, since=start, now=end + 660, trigger=trigger)
    assert third.action == "retrain" and len(trigger.calls) == 2


def test_unrepairable_drift_is_alerted_not_retrained_again(tmp_path, traffic_log, reference_dir):
    """A retraining for this drift ended (kfp.local) and the same drift still brings a performance alarm: even
    past the cooldown the monitor alerts 'unrepairable' instead of retraining again and again."""
    config = make_config(tmp_path, traffic_log["path"], reference_dir, cooldown="1s")
    trigger = RecordingTrigger(status="SUCCEEDED")
    start, end = traffic_log["degraded"]
    first = run_once(config, since=start, now=end, trigger=trigger)
    assert first.action == "retrain" and first.trigger["drift"]["target"]["brightness_ratio"] < 0.85
    for k in range(2):
        again = run_once(config, since=start, now=end + 600 * (k + 1), trigger=trigger)
        assert again.action == "unrepairable", again.reasons
        assert any(r.startswith("known unrepairable") and "brightness down" in r for r in again.reasons)
        # a local reference has no registry to read the gate from: the champion did not change, said as such
        known = again.figures["unrepairable"]
        assert known["outcome"] == "unknown" and known["run_id"] == "run-1" and known["alarms"], known
        assert "no retrained model was promoted" in known["message"] and known["message"] in again.reasons
    assert len(trigger.calls) == 1
    alerts = _alerts(tmp_path)
    assert [a["action"] for a in alerts] == ["retrain", "unrepairable", "unrepairable"]
    assert "the retrained model was unknown" in alerts[1]["summary"]


def test_a_failed_retraining_does_not_make_the_drift_unrepairable(tmp_path, traffic_log, reference_dir):
    """A retraining that FAILED produced no model, so it says nothing about the drift: past the cooldown the
    monitor may start another (the retry policy decides), never 'unrepairable'."""
    config = make_config(tmp_path, traffic_log["path"], reference_dir, cooldown="1s")
    trigger = RecordingTrigger(status="FAILED")
    start, end = traffic_log["degraded"]
    assert run_once(config, since=start, now=end, trigger=trigger).action == "retrain"
    again = run_once(config, since=start, now=end + 3600, trigger=trigger)
    assert again.action == "retrain" and "unrepairable" not in again.figures, again.reasons
    assert len(trigger.calls) == 2


def test_logs_without_feedback_judge_drift_only(tmp_path, traffic_log, reference_dir, recording_trigger):
    log = tmp_path / "requests.sqlite"
    shutil.copy(traffic_log["path"], log)
    with sqlite3.connect(log) as db:
        db.execute("DELETE FROM feedback")
    config = make_config(tmp_path, log, reference_dir)
    run = run_once(
        config, since=traffic_log["degraded"][0], now=traffic_log["degraded"][1], trigger=recording_trigger
    )
    assert run.figures["performance"] is None
    assert any("accuracy/FAR not judged: 0 labelled" in r for r in run.reasons)
    assert run.action == "retrain" and run.figures["policy"]["judged"] == ["drift"]


def test_empty_window_and_corrupt_rows(tmp_path, traffic_log, reference_dir, recording_trigger):
    config = make_config(tmp_path, traffic_log["path"], reference_dir)
    start = traffic_log["normal"][0]
    empty = run_once(config, since=start - 7200, now=start - 3600, trigger=recording_trigger)
    assert empty.action == "empty" and "empty window" in empty.reasons[0]

    log = tmp_path / "corrupt.sqlite"
    shutil.copy(traffic_log["path"], log)
    with sqlite3.connect(log) as db:
        ids = [
            r[0]
            for r in db.execute(
                "SELECT DISTINCT f.request_id FROM faces f JOIN requests r USING (request_id) WHERE r.ts < ? "
                "ORDER BY r.ts LIMIT 3",
                (traffic_log["normal"][1],),
            )
        ]
        db.execute("UPDATE faces SET det_probability = 'garbage' WHERE request_id = ?", (ids[0],))
        db.execute("UPDATE faces SET brightness = 999 WHERE request_id = ?", (ids[1],))
        db.execute("UPDATE faces SET decision = 'maybe' WHERE request_id = ?", (ids[2],))
    run = run_once(
        config.model_copy(update={"request_log": log}),
        since=start,
        now=traffic_log["normal"][1],
        trigger=recording_trigger,
    )
    problems = [r["problem"] for r in run.figures["window"]["rejected_examples"]]
    assert run.figures["window"]["rejected_rows"] == 3
    assert any("not a number" in p for p in problems) and any("outside" in p for p in problems)
    assert any("decision 'maybe'" in p for p in problems)
    assert run.action == "ok" and any("3 corrupt log row(s) left out" in r for r in run.reasons)


@pytest.mark.parametrize("content", [None, b"this is not a database"])
def test_missing_or_broken_log_is_an_error_not_a_crash(tmp_path, reference_dir, recording_trigger, content):
    log = tmp_path / "requests.sqlite"
    if content is not None:
        log.write_bytes(content)
    run = run_once(make_config(tmp_path, log, reference_dir), trigger=recording_trigger)
    assert run.action == "error" and recording_trigger.calls == []
    assert "request log" in run.reasons[0]
    assert _alerts(tmp_path)[-1]["severity"] == "error"


def test_alarms_outside_retrain_on_only_alert(tmp_path, traffic_log, reference_dir, recording_trigger):
    config = make_config(tmp_path, traffic_log["path"], reference_dir, retrain_on=("far",), max_far=0.99)
    run = run_once(
        config, since=traffic_log["degraded"][0], now=traffic_log["degraded"][1], trigger=recording_trigger
    )
    assert run.action == "alert" and recording_trigger.calls == []
    assert any("no retraining" in r for r in run.reasons)
