"""The gate's robustness and per-group criteria: refusals name the condition or group."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from faceops.evaluation.gate import decide, group_problems, robustness_problems
from faceops.training.config import GateConfig, GroupGateConfig, RobustnessGateConfig


def _condition(tar: float | None, frr: float, status: str = "ok", genuine: int = 300) -> dict[str, Any]:
    return {"tar_at_far": tar, "frr": frr, "status": status, "genuine": genuine, "impostors": 300}


def _group(frr: float, status: str = "ok") -> dict[str, Any]:
    return {"frr": frr, "status": status, "genuine": 100 if status == "ok" else 3, "impostors": 100}


def _suite(dark: float, blur: float, groups: dict[str, float], small: bool = False) -> dict[str, Any]:
    table = {name: _group(frr) for name, frr in groups.items()}
    if small:
        table["dark"] = _group(0.5, "insufficient")
    judged = [g["frr"] for g in table.values() if g["status"] == "ok"]
    return {
        "target_far": 0.001,
        "conditions": {"underexposure": _condition(dark, 1 - dark), "gaussian_blur": _condition(blur, 1 - blur)},
        "groups": {
            "skin_tone": {
                "groups": table,
                "worst_group": max((k for k in table if table[k]["status"] == "ok"), key=lambda k: table[k]["frr"]),
                "largest_frr_gap": max(judged) - min(judged),
            }
        },
    }


def _result(suite: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "closed_set": {"accuracy": 0.95},
        "open_set": {"target_far": 0.001, "tar_at_far": {"0.001": 0.9}, "far_at_threshold": 0.001, "auc": 0.99},
    }
    if suite is not None:
        out["robustness"] = suite
    return out


def test_off_by_default_and_the_dump_is_unchanged() -> None:
    assert GateConfig().robustness is None and GateConfig().groups is None
    assert "robustness" not in GateConfig().model_dump() and "groups" not in GateConfig().model_dump()
    worse = _result(_suite(0.2, 0.2, {"light": 0.1, "tan": 0.5}))
    better = _result(_suite(0.9, 0.9, {"light": 0.1, "tan": 0.1}))
    assert decide(worse, better, GateConfig())[0]  # the criteria are off: the suite is not looked at


def test_refusal_names_the_condition() -> None:
    config = GateConfig(robustness=RobustnessGateConfig(conditions=["underexposure", "gaussian_blur"], max_drop=0.02))
    champion = _result(_suite(0.80, 0.70, {"light": 0.1}))
    challenger = _result(_suite(0.70, 0.71, {"light": 0.1}))
    ok, reason = decide(challenger, champion, config)
    assert not ok
    assert "condition underexposure: TAR at FAR 0.001 dropped 0.8000 -> 0.7000" in reason
    assert "condition underexposure: FRR at the threshold rose" in reason
    problems, judged = reason.split(" [judged: ")
    assert "gaussian_blur" not in problems  # better there
    # the decision names every criterion it evaluated, passed or not, champion -> challenger
    assert "condition underexposure (TAR 0.8000 -> 0.7000, FRR 0.2000 -> 0.3000)" in judged
    assert "condition gaussian_blur (TAR 0.7000 -> 0.7100, FRR 0.3000 -> 0.2900)" in judged
    assert "closed-set accuracy 0.9500 -> 0.9500" in judged and judged.endswith("]")
    # judged only on the conditions asked for (what a drift-targeted retraining does)
    assert decide(challenger, champion, GateConfig(robustness=RobustnessGateConfig(conditions=["gaussian_blur"])))[0]
    assert decide(
        challenger,
        champion,
        GateConfig(robustness=RobustnessGateConfig(max_drop=0.2, max_frr_increase=0.2, conditions=["underexposure"])),
    )[0]


def test_insufficient_or_missing_never_passes() -> None:
    rob = RobustnessGateConfig(conditions=["underexposure"])
    champion = _suite(0.8, 0.7, {"light": 0.1})
    thin = _suite(0.9, 0.7, {"light": 0.1})
    thin["conditions"]["underexposure"] = _condition(0.9, 0.1, "insufficient", genuine=4)
    assert robustness_problems(thin, champion, rob) == [
        "condition underexposure: insufficient pairs to judge (4 genuine, 300 impostors; at least 20 of each needed)"
    ]
    assert "not run" in robustness_problems(None, champion, rob)[0]
    assert "not measured" in robustness_problems(champion, champion, RobustnessGateConfig(conditions=["jpeg"]))[0]
    assert not decide(_result(None), _result(champion), GateConfig(robustness=rob))[0]


def test_group_criteria_name_the_group_and_the_gap() -> None:
    config = GateConfig(groups=GroupGateConfig(groupings=["skin_tone"], max_frr_increase=0.05, max_gap_increase=0.02))
    champion = _result(_suite(0.8, 0.8, {"light": 0.10, "tan": 0.12}, small=True))
    challenger = _result(_suite(0.8, 0.8, {"light": 0.08, "tan": 0.20}, small=True))
    ok, reason = decide(challenger, champion, config)
    assert not ok
    assert "group skin_tone/tan: FRR rose 0.1200 -> 0.2000" in reason
    assert "grouping skin_tone: largest FRR gap between groups grew 0.0200 -> 0.1200 (worst group tan" in reason
    assert "too few pairs to judge: skin_tone/dark (3+100 pairs)" in reason  # flagged, not hidden
    fine = _result(_suite(0.8, 0.8, {"light": 0.10, "tan": 0.13}, small=True))
    ok, reason = decide(fine, champion, config)
    assert ok and "too few pairs to judge: skin_tone/dark" in reason
    assert "[judged: " in reason and "grouping skin_tone (largest FRR gap 0.0200 -> 0.0300)" in reason
    problems, _ = group_problems(fine["robustness"], champion["robustness"], GroupGateConfig(groupings=["attr:sex"]))
    assert problems == ["grouping attr:sex: not measured (no such grouping or attribute column)"]


def test_config_refuses_unknown_conditions_and_bad_severities() -> None:
    with pytest.raises(ValidationError, match="unknown conditions \\['fog'\\]"):
        GateConfig.model_validate({"robustness": {"conditions": ["fog"]}})
    with pytest.raises(ValidationError, match="severities must be in"):
        RobustnessGateConfig(conditions=["noise"], severities={"noise": 2.0})
    config = GateConfig.model_validate({"robustness": {"conditions": ["underexposure"], "severities": {"underexposure": 0.8}}})
    assert config.robustness is not None and config.robustness.severities == {"underexposure": 0.8}
