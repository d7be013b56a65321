"""Wilson intervals, accuracy/FAR/FRR from feedback, durations, the policy's config and state."""

from __future__ import annotations

import math

import pytest

from faceops.errors import ConfigError
from faceops.telemetry.stats import LabelledFace, Rate, parse_duration, performance, wilson_interval


def test_wilson_interval_properties():
    # Textbook value (Newcombe 1998, table I): 0 of 10 -> [0, 0.2775]; 1 of 10 -> [0.0179, 0.4042].
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    low, high = wilson_interval(1, 10)
    assert (low, high) == (pytest.approx(0.0179, abs=1e-4), pytest.approx(0.4042, abs=1e-4))
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 0) == (0.0, 1.0)
    narrow, wide = wilson_interval(500, 1000), wilson_interval(5, 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_performance_counts_each_kind_of_attempt():
    faces = [
        LabelledFace("recognize", "known", "ann", "ann"),  # mated, right
        LabelledFace("recognize", "known", "bob", "ann"),  # mated, misidentified
        LabelledFace("recognize", "unknown", "unknown", "ann"),  # mated, rejected
        LabelledFace("recognize", "known", "bob", "impostor"),  # non-mated, falsely accepted
        LabelledFace("recognize", "unknown", "unknown", "impostor"),
        LabelledFace("verify", "same", None, "genuine"),
        LabelledFace("verify", "same", None, "impostor"),  # false accept
        LabelledFace("verify", "different", None, "impostor"),
        LabelledFace("recognize", "known", "ann", "genuine"),  # 'genuine' means nothing for recognize
        LabelledFace("detect", "detected", None, "ann"),  # detect has no decision to score
    ]
    perf = performance(faces)
    assert perf.labelled == 8 and perf.unusable == 2
    assert (perf.accuracy.k, perf.accuracy.n) == (4, 8)
    assert (perf.far.k, perf.far.n) == (2, 4)
    assert (perf.frr.k, perf.frr.n) == (1, 4)
    assert (perf.misidentification_rate.k, perf.misidentification_rate.n) == (1, 4)
    assert perf.far.low < perf.far.value < perf.far.high


def test_no_feedback_gives_empty_rates():
    perf = performance([])
    assert perf.labelled == 0 and perf.accuracy == Rate(0, 0, None, 0.0, 1.0)


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("1.5h", 5400), ("7d", 604800), (30, 30)]
)
def test_parse_duration(text, seconds):
    assert math.isclose(parse_duration(text), seconds)


@pytest.mark.parametrize("text", ["ten minutes", "-5m", "0", "5w", ""])
def test_parse_duration_refuses_nonsense(text):
    with pytest.raises(ConfigError, match="bad duration"):
        parse_duration(text)


def test_monitor_config_from_yaml_refuses_unknown_keys_and_bad_durations(tmp_path):
    from faceops.monitoring.config import load_monitor_config

    good = tmp_path / "good.yaml"
    good.write_text(
        "window: 30m\npolicy: {cooldown: 12h, min_faces: 5}\n"
        "alerts: [{type: webhook, url: 'http://127.0.0.1:1/hook'}, {type: file, path: a.jsonl}]\n"
    )
    config = load_monitor_config(good)
    assert config.window == 1800 and config.policy.cooldown == 43200 and len(config.alerts) == 2
    for text, message in [
        ("polcy: {}\n", "polcy"),
        ("window: soon\n", "bad duration"),
        ("alerts: [{type: pager}]\n", "alerts"),
        ("policy: {max_drift_share: 2}\n", "max_drift_share"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_monitor_config(bad)


def test_state_claims_are_exclusive_within_the_cooldown(tmp_path):
    from faceops.monitoring.state import SqliteState

    with SqliteState(tmp_path / "s.sqlite") as a, SqliteState(tmp_path / "s.sqlite") as b:
        claim, _ = a.claim_trigger("drift", now=1000.0, cooldown_s=3600, retry_after_s=600)
        assert claim is not None
        again, why = b.claim_trigger("drift", now=1001.0, cooldown_s=3600, retry_after_s=600)
        assert again is None and why.startswith("cooldown")
        a.finish_trigger(claim, True, {"run_id": "r1"})
        later, _ = b.claim_trigger("drift", now=1000.0 + 3601, cooldown_s=3600, retry_after_s=600)
        assert later is not None
        assert [t["status"] for t in a.triggers()] == ["pending", "started"]
