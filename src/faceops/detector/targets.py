"""Dense training targets on the stride-4 grid from the faces of a sample."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from faceops.detector.data import Sample
from faceops.detector.model import STRIDE

__all__ = ["gaussian_sigma", "make_targets", "to_batch"]


def gaussian_sigma(face_cells: float) -> float:
    """Spread (in cells) of a face's centre Gaussian: a twentieth of the face side, at least 0.8 cell."""
    return max(0.8, face_cells / 20.0)


def make_targets(sample: Sample) -> dict[str, np.ndarray]:
    """Targets of one sample.

    Returns:
        ``heatmap`` (1, h, w) Gaussians, exactly 1 at each centre cell; ``mask`` (1, h, w) 0 inside ignore boxes;
        ``reg_weight`` (h, w) the Gaussian value of the face a cell regresses (0: none); ``boxes`` (4, h, w) and
        ``landmarks`` (10, h, w) of that face, in pixels.
    """
    height, width = sample.image.shape[:2]
    h, w = height // STRIDE, width // STRIDE
    heat = np.zeros((h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    boxes = np.zeros((4, h, w), np.float32)
    marks = np.zeros((10, h, w), np.float32)
    mask = np.ones((h, w), np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for box in sample.ignore:
        x1, y1, x2, y2 = (box / STRIDE).tolist()
        mask[(xs + 0.5 >= x1) & (xs + 0.5 <= x2) & (ys + 0.5 >= y1) & (ys + 0.5 <= y2)] = 0.0
    for box, pts in zip(sample.boxes, sample.landmarks, strict=True):
        cx, cy = (box[0] + box[2]) / 2 / STRIDE, (box[1] + box[3]) / 2 / STRIDE
        col, row = int(np.clip(cx, 0, w - 1)), int(np.clip(cy, 0, h - 1))
        side = float(np.sqrt(max(box[2] - box[0], 1.0) * max(box[3] - box[1], 1.0))) / STRIDE
        sigma = gaussian_sigma(side)
        g = np.exp(-((xs - col) ** 2 + (ys - row) ** 2) / (2 * sigma**2)).astype(np.float32)
        heat = np.maximum(heat, g)
        take = g > weight
        weight[take] = g[take]
        boxes[:, take] = box[:, None]
        marks[:, take] = pts.reshape(10)[:, None]
        heat[row, col] = 1.0
    return {"heatmap": heat[None], "mask": mask[None], "reg_weight": weight, "boxes": boxes, "landmarks": marks}


def to_batch(samples: Sequence[Sample]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Images (B, 3, H, W) in [0, 1] and the stacked targets of several samples."""
    images = torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).float() / 255.0
    targets = [make_targets(s) for s in samples]
    return images, {k: torch.from_numpy(np.stack([t[k] for t in targets])) for k in targets[0]}
