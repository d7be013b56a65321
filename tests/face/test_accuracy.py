"""Accuracy on LFW's protocol: fold 1 with the threshold chosen on fold 2 (folds 3+ were used for tuning).

Measured on the default model (MobileFaceNet with its preprocessing), the one the CLI and ``make run`` use; the
pretrained InceptionResnetV1's figures on all eight folds are ``make bench-lfw``'s."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceops.evaluation.bundle import ModelBundle
from faceops.evaluation.metrics import best_accuracy_threshold, verification_report
from faceops.evaluation.pairs import read_lfw_pairs
from faceops.face.verification import score_pairs


def test_lfw_fold1_accuracy_with_threshold_from_fold2(lfw: Path) -> None:
    pairs = read_lfw_pairs(lfw / "pairs.txt", lfw, folds=[1, 2])
    scored = score_pairs(ModelBundle.default().recognizer(), pairs)
    assert not scored.unreadable
    assert len(scored.no_face) <= 5, scored.no_face
    fold1, fold2 = scored.folds == 1, scored.folds == 2
    threshold = best_accuracy_threshold(scored.scores[fold2], scored.labels[fold2])
    accuracy = float(np.mean((scored.scores[fold1] >= threshold) == scored.labels[fold1]))
    assert accuracy >= 0.98, f"fold-1 accuracy {accuracy:.4f} at threshold {threshold:.4f} from fold 2"
    report = verification_report(scored.scores, scored.labels, scored.folds)
    assert report.auc >= 0.99
    assert report.fold_accuracies is not None and report.fold_accuracies[0] == accuracy
