"""Matching, landmark error and the scores of the detector evaluation, on hand-made faces."""

from __future__ import annotations

import numpy as np
import pytest

from faceops.detector.evaluate import box_iou, match_faces, nme, score_detections
from faceops.face.detection import Face

_MARKS = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)


def _face(box: tuple[float, float, float, float], p: float = 0.9, shift: float = 0.0) -> Face:
    return Face(box=box, probability=p, landmarks=_MARKS + shift)


def test_box_iou_by_hand() -> None:
    iou = box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]]))
    assert iou[0].tolist() == pytest.approx([1 / 7, 1.0, 0.0])


def test_nme_is_over_the_inter_ocular_distance() -> None:
    # Every point 4 px off, eyes 40 px apart: 0.1.
    assert nme(_MARKS + np.array([4.0, 0.0]), _MARKS) == pytest.approx(0.1)


def test_matching_counts_hits_false_positives_misses_and_ignores() -> None:
    refs = [_face((0, 0, 100, 100)), _face((200, 0, 300, 100))]
    dets = [
        _face((5, 5, 100, 100), 0.9),  # hit on the first
        _face((0, 0, 95, 100), 0.8),  # duplicate of the first: a false positive
        _face((400, 0, 500, 100), 0.7),  # on an ignored face: not counted
        _face((600, 0, 700, 100), 0.6),  # nothing there: a false positive
    ]
    m = match_faces(dets, refs, ignore=np.array([[400, 0, 500, 100]]))
    assert m.pairs == [(0, 0)] and m.false_positives == 2 and m.misses == 1


def test_scores_by_threshold() -> None:
    refs = [[_face((0, 0, 100, 100))], [_face((0, 0, 100, 100))]]
    dets = [[_face((0, 0, 100, 100), 0.9, shift=4.0)], [_face((0, 0, 100, 100), 0.35), _face((300, 0, 400, 90), 0.5)]]
    low, high = score_detections(dets, refs, thresholds=(0.3, 0.6))
    assert low.to_dict()["recall"] == 1.0 and low.to_dict()["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert high.to_dict()["recall"] == 0.5 and high.to_dict()["precision"] == 1.0
    assert high.to_dict()["nme_mean"] == pytest.approx(np.sqrt(32) / 40, abs=1e-4)


def test_undefined_figures_are_none_not_nan() -> None:
    (score,) = score_detections([[]], [[_face((0, 0, 100, 100))]], thresholds=(0.5,))
    figures = score.to_dict()
    assert figures["recall"] == 0.0 and figures["precision"] is None and figures["nme_mean"] is None
