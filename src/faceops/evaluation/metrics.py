"""Verification metrics: ROC, AUC, EER, TAR at a FAR, accuracy/FAR/FRR at a threshold, and k-fold accuracy.

Scores are similarities (higher = more alike); labels are 1 for genuine (same person) pairs, 0 for impostors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = [
    "VerificationReport",
    "accuracy_at_threshold",
    "best_accuracy_threshold",
    "equal_error_rate",
    "far_frr",
    "kfold_accuracy",
    "tar_at_far",
    "threshold_at_far",
    "verification_report",
]


def _split(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    return scores[labels], scores[~labels]


def threshold_at_far(impostor_scores: np.ndarray, far: float) -> float:
    """The lowest threshold at which at most ``far`` of the impostor scores are accepted (score >= threshold)."""
    impostors = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    if len(impostors) == 0:
        raise ValueError("no impostor scores")
    allowed = int(np.floor(far * len(impostors)))
    if allowed >= len(impostors):
        return float(impostors[-1])
    return float(np.nextafter(impostors[allowed], np.inf))


def far_frr(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """False accept rate and false reject rate at a threshold."""
    genuine, impostors = _split(scores, labels)
    far = float(np.mean(impostors >= threshold)) if len(impostors) else float("nan")
    frr = float(np.mean(genuine < threshold)) if len(genuine) else float("nan")
    return far, frr


def accuracy_at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Share of pairs judged right at a threshold (genuine: score >= threshold; impostor: below)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    if len(scores) == 0:
        raise ValueError("no scores")
    return float(np.mean((scores >= threshold) == labels))


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> tuple[float, float]:
    """True accept rate at the threshold where FAR <= ``far``; returns (TAR, threshold)."""
    genuine, impostors = _split(scores, labels)
    threshold = threshold_at_far(impostors, far)
    return float(np.mean(genuine >= threshold)), threshold


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The equal error rate (where FAR = FRR) and its threshold, interpolated on the ROC."""
    fpr, tpr, thresholds = roc_curve(np.asarray(labels).astype(int), scores)
    fnr = 1.0 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2.0), float(thresholds[i])


def best_accuracy_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold that maximises accuracy (midpoint between neighbouring scores)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    order = np.argsort(scores)
    s, y = scores[order], labels[order]
    # Accepting everything from index i up: correct = impostors below i + genuine from i on.
    impostors_below = np.concatenate([[0], np.cumsum(~y)])
    genuine_from = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    correct = impostors_below + genuine_from
    i = int(np.argmax(correct))
    candidates = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2.0, [s[-1] + 1e-6]])
    return float(candidates[i])


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy of each fold with the threshold chosen on all the other folds (LFW's protocol).

    Returns:
        per-fold accuracies and the threshold used for each fold.
    """
    scores, labels, folds = np.asarray(scores), np.asarray(labels).astype(bool), np.asarray(folds)
    unique = np.unique(folds)
    if len(unique) < 2:
        raise ValueError("k-fold accuracy needs at least two folds")
    accuracies, thresholds = [], []
    for fold in unique:
        test = folds == fold
        threshold = best_accuracy_threshold(scores[~test], labels[~test])
        accuracies.append(float(np.mean((scores[test] >= threshold) == labels[test])))
        thresholds.append(threshold)
    return np.array(accuracies), np.array(thresholds)


@dataclass
class VerificationReport:
    """The verification figures FaceOps reports everywhere (CLI, evaluation, monitoring)."""

    pairs: int
    genuine: int
    impostors: int
    auc: float
    eer: float
    eer_threshold: float
    tar_at_far: dict[str, float] = field(default_factory=dict)
    threshold_at_far: dict[str, float] = field(default_factory=dict)
    accuracy_mean: float | None = None
    accuracy_std: float | None = None
    fold_accuracies: list[float] | None = None
    fold_thresholds: list[float] | None = None
    threshold: float | None = None
    accuracy_at_threshold: float | None = None
    far_at_threshold: float | None = None
    frr_at_threshold: float | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def verification_report(
    scores: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray | None = None,
    far_targets: tuple[float, ...] = (1e-2, 1e-3),
    threshold: float | None = None,
) -> VerificationReport:
    """All verification metrics for scored pairs.

    K-fold accuracy (each fold judged at the threshold chosen on the others) needs fold numbers of two or more
    folds; accuracy, FAR and FRR at a fixed ``threshold`` (a model's own) work on any number of folds.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        raise ValueError("verification metrics need both genuine and impostor pairs")
    eer, eer_threshold = equal_error_rate(scores, labels)
    report = VerificationReport(
        pairs=len(scores),
        genuine=int(labels.sum()),
        impostors=int((1 - labels).sum()),
        auc=float(roc_auc_score(labels, scores)),
        eer=eer,
        eer_threshold=eer_threshold,
    )
    for far in far_targets:
        tar, at_far = tar_at_far(scores, labels, far)
        report.tar_at_far[f"{far:g}"] = tar
        report.threshold_at_far[f"{far:g}"] = at_far
    if folds is not None and len(np.unique(folds)) > 1:
        accuracies, thresholds = kfold_accuracy(scores, labels, folds)
        report.accuracy_mean = float(accuracies.mean())
        report.accuracy_std = float(accuracies.std())
        report.fold_accuracies = [float(a) for a in accuracies]
        report.fold_thresholds = [float(t) for t in thresholds]
    if threshold is not None:
        report.threshold = float(threshold)
        report.accuracy_at_threshold = accuracy_at_threshold(scores, labels, threshold)
        report.far_at_threshold, report.frr_at_threshold = far_frr(scores, labels, threshold)
    return report
