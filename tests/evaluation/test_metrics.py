"""Verification metrics against cases whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from faceops.evaluation.metrics import (
    best_accuracy_threshold,
    equal_error_rate,
    far_frr,
    kfold_accuracy,
    tar_at_far,
    threshold_at_far,
    verification_report,
)


def test_threshold_at_far_accepts_exactly_the_allowed_impostors() -> None:
    impostors = np.linspace(0, 1, 1000)
    t = threshold_at_far(impostors, 0.01)
    assert np.sum(impostors >= t) == 10
    assert np.sum(impostors >= threshold_at_far(impostors, 1e-3)) == 1


def test_far_frr_and_tar() -> None:
    scores = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0, 0])
    assert far_frr(scores, labels, 0.5) == pytest.approx((1 / 3, 1 / 3))
    tar, threshold = tar_at_far(scores, labels, 0.0)
    assert threshold > 0.7 and tar == pytest.approx(2 / 3)


def test_perfect_and_random_separation() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], 500)
    perfect = np.where(labels == 1, rng.uniform(0.6, 1, 1000), rng.uniform(0, 0.4, 1000))
    report = verification_report(perfect, labels, folds=np.tile(np.arange(1, 11), 100))
    assert report.auc == 1.0 and report.eer == 0.0 and report.accuracy_mean == 1.0
    assert report.tar_at_far["0.001"] == 1.0
    noise = rng.uniform(0, 1, 1000)
    assert 0.4 < verification_report(noise, labels).auc < 0.6
    assert 0.4 < equal_error_rate(noise, labels)[0] < 0.6


def test_best_threshold_and_kfold() -> None:
    scores = np.array([0.1, 0.2, 0.35, 0.6, 0.7, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    t = best_accuracy_threshold(scores, labels)
    assert 0.35 < t < 0.6
    accuracies, thresholds = kfold_accuracy(np.tile(scores, 2), np.tile(labels, 2), np.repeat([1, 2], 6))
    assert list(accuracies) == [1.0, 1.0] and all(0.35 < x < 0.6 for x in thresholds)
    with pytest.raises(ValueError, match="two folds"):
        kfold_accuracy(scores, labels, np.ones(6))
    with pytest.raises(ValueError, match="both genuine and impostor"):
        verification_report(scores, np.ones(6))
