"""The detector's loss: three terms suited to faces, weighted by :class:`LossConfig`.

``total = heatmap_weight * focal + box_weight * giou + landmark_weight * wing``

* **Focal loss on the centre heatmap** (CenterNet's penalty-reduced variant, Law & Deng 2018; Zhou et al. 2019).
  Face centres are a few cells among thousands, so the easy negatives are down-weighted by ``p ** alpha`` and the
  negatives near a centre by ``(1 - y) ** beta`` of the Gaussian target ``y``. Cells inside an *ignore* box (a face
  MTCNN was unsure of) count neither way. Normalised by the number of faces.
* **GIoU on boxes** (Rezatofighi et al. 2019): ``1 - GIoU`` between the predicted and the labelled box at the cells
  near each centre, weighted by the Gaussian. Scale-invariant, so a 20-pixel face counts as much as a 200-pixel one,
  and it still has a gradient when the boxes do not overlap.
* **Wing loss on landmarks** (Feng et al. 2018): logarithmic for small errors (so the last pixels of eye error,
  which decide the alignment, still pull), linear for large ones (so a bad pseudo-label does not dominate).
  Errors are measured in percent of the face size, which makes ``wing_w`` and ``wing_epsilon`` independent of the
  face's pixels.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from faceops.detector.model import boxes_from_output, cell_centres
from faceops.face.config import StrictConfig

__all__ = ["LossConfig", "DetectionLoss", "focal_loss", "giou_loss", "wing_loss"]


class LossConfig(StrictConfig):
    """Weights and shape parameters of the detector loss."""

    heatmap_weight: float = Field(default=1.0, ge=0.0, description="Weight of the focal heatmap term.")
    box_weight: float = Field(default=2.0, ge=0.0, description="Weight of the GIoU box term.")
    landmark_weight: float = Field(default=0.1, ge=0.0, description="Weight of the wing landmark term.")
    focal_alpha: float = Field(default=2.0, ge=0.0, description="Focusing exponent on the predicted probability.")
    focal_beta: float = Field(default=4.0, ge=0.0, description="Penalty reduction near a centre: (1 - y) ** beta.")
    wing_w: float = Field(default=10.0, gt=0.0, description="Wing: width of the log region, percent of face size.")
    wing_epsilon: float = Field(default=2.0, gt=0.0, description="Wing: curvature of the log region.")
    min_target: float = Field(
        default=0.3, ge=0.0, le=1.0, description="Cells whose Gaussian target is at least this regress box/landmarks."
    )


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """Penalty-reduced focal loss, summed over cells and divided by the number of centres (cells where y = 1).

    Args:
        logits: heatmap logits, any shape.
        target: Gaussian targets in [0, 1] of the same shape, exactly 1 at the centres.
        mask: 1 where a cell counts, 0 where it is ignored (same shape); all count when ``None``.
    """
    prob = torch.sigmoid(logits)
    log_p = torch.nn.functional.logsigmoid(logits)
    log_not_p = torch.nn.functional.logsigmoid(-logits)
    positive = target.eq(1).float()
    pos = -((1 - prob) ** alpha) * log_p * positive
    neg = -((1 - target) ** beta) * prob**alpha * log_not_p * (1 - positive)
    if mask is not None:
        neg = neg * mask
    return (pos.sum() + neg.sum()) / positive.sum().clamp(min=1.0)


def giou_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean of ``1 - GIoU`` over (N, 4) x1, y1, x2, y2 box pairs (0 when N is 0)."""
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    area_p = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    area_t = (target[:, 2] - target[:, 0]).clamp(min=0) * (target[:, 3] - target[:, 1]).clamp(min=0)
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area_p + area_t - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (torch.maximum(pred[:, 2:], target[:, 2:]) - torch.minimum(pred[:, :2], target[:, :2])).prod(dim=1)
    giou = iou - (hull - union) / hull.clamp(min=1e-9)
    losses = 1.0 - giou
    if weight is None:
        return losses.mean()
    return (losses * weight).sum() / weight.sum().clamp(min=1e-9)


def wing_loss(
    pred: torch.Tensor, target: torch.Tensor, w: float = 10.0, epsilon: float = 2.0, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Wing loss per landmark coordinate, averaged over coordinates then (weighted) over rows.

    ``wing(x) = w * ln(1 + |x| / epsilon)`` for ``|x| < w``, else ``|x| - C`` with ``C = w - w * ln(1 + w / epsilon)``
    (continuous at ``|x| = w``).

    Args:
        pred, target: (N, K) coordinates.
        weight: (N,) row weights; a plain mean when ``None``.
    """
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    x = (pred - target).abs()
    c = w - w * math.log(1.0 + w / epsilon)
    losses = torch.where(x < w, w * torch.log1p(x / epsilon), x - c).mean(dim=1)
    if weight is None:
        return losses.mean()
    return (losses * weight).sum() / weight.sum().clamp(min=1e-9)


class DetectionLoss:
    """The weighted sum of the three terms, from :class:`faceops.detector.model.FaceNet`'s raw outputs and the
    dense targets made by :func:`faceops.detector.targets.make_targets`."""

    def __init__(self, config: LossConfig | None = None) -> None:
        self.config = config or LossConfig()

    def __call__(self, outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The terms (``heatmap``, ``box``, ``landmarks``, already weighted) and their sum ``total``."""
        cfg = self.config
        heat = focal_loss(outputs["heatmap"], targets["heatmap"], targets["mask"], cfg.focal_alpha, cfg.focal_beta)
        # Regress at the cells near a centre, each weighted by its Gaussian target.
        weight = targets["reg_weight"]  # (B, H, W), 0 where no face is assigned
        chosen = weight >= cfg.min_target
        w = weight[chosen]
        pred_boxes = boxes_from_output(outputs["box"]).permute(0, 2, 3, 1)[chosen]
        box = giou_loss(pred_boxes, targets["boxes"].permute(0, 2, 3, 1)[chosen], w)
        gt_boxes = targets["boxes"].permute(0, 2, 3, 1)[chosen]
        size = ((gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])).clamp(min=1.0).sqrt()
        centres = cell_centres(weight.shape[1], weight.shape[2], weight.device).permute(1, 2, 0)
        centres = centres.expand(weight.shape[0], -1, -1, -1)[chosen]  # (N, 2)
        true_offsets = (targets["landmarks"].permute(0, 2, 3, 1)[chosen].reshape(-1, 5, 2) - centres[:, None]) / size[:, None, None]
        pred_offsets = outputs["landmarks"].permute(0, 2, 3, 1)[chosen].reshape(-1, 5, 2)
        marks = wing_loss(100.0 * pred_offsets.flatten(1), 100.0 * true_offsets.flatten(1), cfg.wing_w, cfg.wing_epsilon, w)
        terms = {
            "heatmap": cfg.heatmap_weight * heat,
            "box": cfg.box_weight * box,
            "landmarks": cfg.landmark_weight * marks,
        }
        terms["total"] = terms["heatmap"] + terms["box"] + terms["landmarks"]
        return terms
