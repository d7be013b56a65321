"""The policy's FAR limit: 1:N search is judged against the champion's own 1:N FAR, not the pairwise target."""

from __future__ import annotations

import pytest
from faceops.monitoring.config import PolicyConfig
from faceops.monitoring.policy import far_limit, judge

from faceops.telemetry.stats import Performance, Rate


def window(false_accepts: int, impostors: int, correct: int = 90, labelled: int = 100) -> Performance:
    mated = labelled - impostors
    return Performance(
        accuracy=Rate.of(correct, labelled),
        far=Rate.of(false_accepts, impostors),
        frr=Rate.of(0, mated),
        misidentification_rate=Rate.of(0, mated),
        labelled=labelled,
        unusable=0,
    )


REFERENCE = {"accuracy": {"value": 0.9}, "far": {"value": 0.04}}


@pytest.mark.parametrize(
    ("policy", "reference", "target", "expected"),
    [
        ({}, REFERENCE, 1e-3, 0.09),  # the reference's 1:N FAR + 0.05
        ({"max_far_increase": 0.0}, REFERENCE, 0.1, 0.1),  # never below the target FAR
        ({"max_far": 0.2}, REFERENCE, 1e-3, 0.2),  # an explicit limit wins
        ({}, {"accuracy": {"value": 0.9}}, 1e-3, 1e-3),  # a reference without FAR: the target
        ({}, {}, None, None),  # nothing defines a limit: FAR is not judged
    ],
)
def test_far_limit(policy, reference, target, expected):
    limit = far_limit(PolicyConfig(**policy), reference, target)
    assert limit == pytest.approx(expected) if expected is not None else limit is None


def test_far_alarm_only_when_clearly_above_the_reference():
    config = PolicyConfig(min_feedback=10)
    # 5 of 100 impostors accepted: about the reference's 4 %, far above the pairwise target 1e-3: no alarm
    calm = judge(None, 0, window(5, 100), REFERENCE, 1e-3, config)
    assert "far" in calm.judged and not calm.alarms
    # 40 of 100: the lower end of the interval is well above 0.04 + 0.05
    bad = judge(None, 0, window(40, 100), REFERENCE, 1e-3, config)
    assert [a.kind for a in bad.alarms] == ["far"]
    assert bad.alarms[0].figures["max_far"] == pytest.approx(0.09)


def test_far_not_judged_without_any_limit():
    verdict = judge(None, 0, window(40, 100), {"accuracy": {"value": 0.9}}, None, PolicyConfig(min_feedback=10))
    assert "far" not in verdict.judged
    assert any("FAR not judged" in note for note in verdict.notes)
