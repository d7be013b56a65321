"""Evaluation metrics on controlled embeddings, and the gate's decision rule."""

from __future__ import annotations

import numpy as np
import pytest

from faceops.errors import DataValidationFailed
from faceops.evaluation.evaluate import closed_set, open_set
from faceops.evaluation.gate import decide, key_metrics, with_lfw
from faceops.training.config import EvalConfig, GateConfig


def _clusters(people: int, per_person: int, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 32))
    emb = np.concatenate([c + spread * rng.normal(size=(per_person, 32)) for c in centres])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb, [f"p{i:02d}" for i in range(people) for _ in range(per_person)]


def test_closed_set_counts_a_known_confusion():
    gallery = np.eye(3)
    probes = np.array([[1, 0, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1.0]])
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    result = closed_set(gallery, ["a", "b", "c"], probes, ["a", "b", "c", "c"])
    assert result["accuracy"] == 0.75
    assert result["confusion_matrix"][2] == [0, 1, 1]
    assert result["per_identity"]["b"]["precision"] == 0.5 and result["per_identity"]["c"]["recall"] == 0.5


def test_open_set_calibrates_on_other_identities_than_it_measures():
    emb, ids = _clusters(people=24, per_person=6, spread=0.6)
    result = open_set(emb, ids, EvalConfig(target_far=0.01, far_targets=(0.01,)))
    assert not result["calibrated_on_same_pairs"]
    assert result["calibration_identities"] + result["evaluation_identities"] == 24
    assert result["pairs"] == len(result["scores"])
    n = result["evaluation_identities"] * 6
    assert result["pairs"] == n * (n - 1) // 2
    assert 0 <= result["far_at_threshold"] < 0.05  # near the target on unseen identities, not exactly it
    assert result["auc"] > 0.95


def test_open_set_gets_worse_when_identities_blur_together():
    sharp = open_set(*_clusters(20, 5, 0.3), EvalConfig())
    vague = open_set(*_clusters(20, 5, 3.0), EvalConfig())
    assert vague["auc"] < sharp["auc"] and vague["eer"] > sharp["eer"]


def test_open_set_needs_two_people():
    emb, ids = _clusters(1, 5, 0.3)
    with pytest.raises(DataValidationFailed, match="two held-out identities"):
        open_set(emb, ids, EvalConfig())


def _result(accuracy, far, tar=0.9):
    return {
        "closed_set": {"accuracy": accuracy},
        "open_set": {
            "target_far": 0.001,
            "tar_at_far": {"0.001": tar},
            "far_at_threshold": far,
            "far_at_stored_threshold": far,
            "frr_at_threshold": 0.1,
            "auc": 0.99,
        },
    }


def test_gate_refuses_an_accuracy_drop_and_says_so():
    ok, reason = decide(_result(0.90, 0.001), _result(0.95, 0.001), GateConfig(max_accuracy_drop=0.01))
    assert not ok and "accuracy dropped 0.9500 -> 0.9000" in reason


def test_gate_refuses_a_far_rise_beyond_tolerance():
    ok, reason = decide(_result(0.95, 0.004), _result(0.95, 0.001), GateConfig(max_far_increase=0.001))
    assert not ok and "FAR at the threshold rose" in reason


def test_gate_promotes_within_tolerances_and_a_first_champion():
    config = GateConfig(max_accuracy_drop=0.01, max_far_increase=0.001)
    assert decide(_result(0.945, 0.0015), _result(0.95, 0.001), config)[0]
    assert decide(_result(0.5, 0.01), None, config) == (True, "first champion (no champion to compare with)")
    assert not decide(_result(0.5, 0.01), None, GateConfig(allow_first=False))[0]
    assert not decide(_result(0.99, 0.0, tar=0.2), None, GateConfig(min_tar_at_far=0.5))[0]


def test_gate_refuses_a_challenger_that_does_not_help():
    ok, reason = decide(_result(0.95, 0.001, tar=0.97), _result(0.95, 0.001, tar=0.98), GateConfig())
    assert not ok and "TAR at the target FAR dropped 0.98000 -> 0.97000" in reason


def test_gate_refuses_a_challenger_worse_on_lfw_pairs():
    """Better on the data version's held-out people, worse on LFW's people: refused (the measured case of
    benchmarks/configs/finetune_aggressive.yaml)."""
    report = {
        "models": {"challenger": _result(0.99, 0.001, tar=0.98), "champion": _result(0.99, 0.001, tar=0.95)},
        "lfw_pairs": {
            "pairs": 6000,
            "challenger": {"all": {"accuracy_mean": 0.985}, "clean": {"accuracy_mean": 0.9815}},
            "champion": {"all": {"accuracy_mean": 0.986}, "clean": {"accuracy_mean": 0.9868}},
        },
    }
    models = with_lfw(report)
    assert key_metrics(models["challenger"])["lfw_accuracy"] == 0.9815  # the clean subset when there is one
    ok, reason = decide(models["challenger"], models["champion"], GateConfig())
    assert not ok and "LFW pairs accuracy dropped 0.9868 -> 0.9815" in reason
    assert decide(models["challenger"], models["champion"], GateConfig(max_lfw_accuracy_drop=0.01))[0]
    # without LFW figures on both sides the criterion does not apply
    assert decide(models["challenger"], _result(0.99, 0.001, tar=0.95), GateConfig())[0]
