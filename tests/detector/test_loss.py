"""Each term of the detector loss against values computed by hand, and the weights of the run config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceops.detector.data import Sample
from faceops.detector.loss import DetectionLoss, LossConfig, focal_loss, giou_loss, wing_loss
from faceops.detector.model import STRIDE
from faceops.detector.targets import make_targets


def test_focal_loss_by_hand() -> None:
    # One centre (y = 1) and one near-centre negative (y = 0.5), both predicted at p = 0.5 (logit 0).
    logits = torch.zeros(2)
    target = torch.tensor([1.0, 0.5])
    positive = (0.5**2) * math.log(2)  # -(1 - p)^2 log p
    negative = (0.5**4) * (0.5**2) * math.log(2)  # -(1 - y)^4 p^2 log(1 - p)
    assert focal_loss(logits, target).item() == pytest.approx(positive + negative, rel=1e-6)
    # An ignored negative does not count; the centre always does.
    assert focal_loss(logits, target, mask=torch.tensor([1.0, 0.0])).item() == pytest.approx(positive, rel=1e-6)
    # Normalised by the number of centres: two copies give the same value.
    assert focal_loss(logits.repeat(2), target.repeat(2)).item() == pytest.approx(positive + negative, rel=1e-6)


def test_focal_loss_falls_as_the_prediction_improves() -> None:
    target = torch.tensor([1.0, 0.0])
    worse = focal_loss(torch.tensor([-1.0, 1.0]), target).item()
    better = focal_loss(torch.tensor([3.0, -3.0]), target).item()
    assert better < worse


def test_giou_loss_by_hand() -> None:
    pred = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 9.0, 8.0]])
    target = torch.tensor([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 3.0, 3.0], [5.0, 5.0, 9.0, 8.0]])
    overlap = 1 - (1 / 7 - (9 - 7) / 9)  # inter 1, union 7, hull 9
    apart = 1 - (0 - (9 - 2) / 9)  # no overlap, union 2, hull 9: still a gradient
    assert giou_loss(pred[:1], target[:1]).item() == pytest.approx(overlap, rel=1e-6)
    assert giou_loss(pred[1:2], target[1:2]).item() == pytest.approx(apart, rel=1e-6)
    assert giou_loss(pred[2:], target[2:]).item() == pytest.approx(0.0, abs=1e-7)
    weighted = giou_loss(pred, target, torch.tensor([1.0, 3.0, 0.0])).item()
    assert weighted == pytest.approx((overlap + 3 * apart) / 4, rel=1e-6)
    assert giou_loss(pred[:0], target[:0]).item() == 0.0


def test_wing_loss_by_hand() -> None:
    w, eps = 10.0, 2.0
    small = w * math.log(1 + 1 / eps)  # |x| = 1: logarithmic part
    c = w - w * math.log(1 + w / eps)
    large = 20 - c  # |x| = 20: linear part
    pred = torch.tensor([[1.0, -20.0]])
    assert wing_loss(pred, torch.zeros(1, 2), w, eps).item() == pytest.approx((small + large) / 2, rel=1e-6)
    # Continuous where the two parts meet.
    just_in = wing_loss(torch.tensor([[w - 1e-4]]), torch.zeros(1, 1), w, eps).item()
    just_out = wing_loss(torch.tensor([[w + 1e-4]]), torch.zeros(1, 1), w, eps).item()
    assert just_in == pytest.approx(just_out, abs=1e-3)
    assert wing_loss(torch.zeros(2, 3), torch.zeros(2, 3)).item() == 0.0


def _one_face_sample() -> Sample:
    box = np.array([[40.0, 48.0, 104.0, 120.0]], np.float32)
    marks = np.array([[[58, 70], [86, 70], [72, 86], [60, 102], [84, 102]]], np.float32)
    return Sample(np.zeros((128, 128, 3), np.uint8), box, marks, np.zeros((0, 4), np.float32))


def _perfect_outputs(targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Outputs that reproduce the targets exactly at every regressed cell."""
    h, w = targets["reg_weight"].shape[1:]
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) * STRIDE, (torch.arange(w) + 0.5) * STRIDE, indexing="ij")
    boxes = targets["boxes"][0]
    dist = torch.stack([xs - boxes[0], ys - boxes[1], boxes[2] - xs, boxes[3] - ys]).clamp(min=1e-3)
    size = ((boxes[2] - boxes[0]) * (boxes[3] - boxes[1])).clamp(min=1).sqrt()
    marks = targets["landmarks"][0].reshape(5, 2, h, w)
    offsets = (marks - torch.stack([xs, ys])[None]) / size
    heat = torch.where(targets["heatmap"] == 1, 20.0, -20.0)
    return {"heatmap": heat, "box": torch.log(dist / STRIDE)[None], "landmarks": offsets.reshape(1, 10, h, w)}


def test_detection_loss_is_zero_for_perfect_boxes_and_landmarks_and_weights_scale_terms() -> None:
    targets = {k: torch.from_numpy(v[None]) for k, v in make_targets(_one_face_sample()).items()}
    perfect = _perfect_outputs(targets)
    terms = DetectionLoss()(perfect, targets)
    assert terms["box"].item() == pytest.approx(0.0, abs=1e-5)
    assert terms["landmarks"].item() == pytest.approx(0.0, abs=1e-4)
    # Shift every predicted landmark: the wing term grows, and doubling its weight doubles it.
    shifted = dict(perfect, landmarks=perfect["landmarks"] + 0.05)
    base = DetectionLoss(LossConfig(landmark_weight=1.0))(shifted, targets)
    double = DetectionLoss(LossConfig(landmark_weight=2.0))(shifted, targets)
    assert base["landmarks"].item() == pytest.approx(10 * math.log(1 + 5 / 2), rel=1e-4)  # 5 % of the face
    assert double["landmarks"].item() == pytest.approx(2 * base["landmarks"].item(), rel=1e-6)
    total = double["heatmap"] + double["box"] + double["landmarks"]
    assert double["total"].item() == pytest.approx(total.item(), rel=1e-6)


def test_loss_config_refuses_unknown_and_negative_weights() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        LossConfig(box_weigth=1.0)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        LossConfig(landmark_weight=-1.0)
