"""The trained detector measured against MTCNN: box recall and precision, landmark error, face counts, speed.

MTCNN's faces are the reference (the detector learnt from them, so this measures how well it copies MTCNN on
people it never saw, not absolute accuracy): a reference face is one MTCNN scores at ``min_probability`` or more;
MTCNN's less certain faces are *ignored* (a detection on one is neither a hit nor a false positive). A detection
matches a reference face at IoU >= ``iou`` (greedy, most probable detection first, each reference used once).
Landmark error is the mean distance over the 5 points divided by the reference's inter-ocular distance (NME).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from faceops.face.detection import Face

__all__ = ["DetectionScore", "box_iou", "match_faces", "nme", "score_detections", "time_detector"]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU between (N, 4) and (M, 4) x1, y1, x2, y2 boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nme(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean point error of (5, 2) landmarks over the reference's inter-ocular distance (eye centre to eye centre)."""
    ocular = float(np.linalg.norm(ref[0] - ref[1]))
    return float(np.linalg.norm(pred - ref, axis=1).mean() / max(ocular, 1e-6))


@dataclass
class PhotoMatch:
    """Matching of one photo: true positives as (detection, reference) index pairs, false positives, misses."""

    pairs: list[tuple[int, int]] = field(default_factory=list)
    false_positives: int = 0
    misses: int = 0


def match_faces(
    detections: Sequence[Face], references: Sequence[Face], ignore: np.ndarray | None = None, iou: float = 0.5
) -> PhotoMatch:
    """Greedy matching of detections (most probable first) to reference faces at IoU >= ``iou``.

    A detection that matches no reference but overlaps an ``ignore`` box at ``iou`` or more is not counted.
    """
    order = sorted(range(len(detections)), key=lambda i: -detections[i].probability)
    dets = np.array([detections[i].box for i in order], np.float64).reshape(-1, 4)
    refs = np.array([r.box for r in references], np.float64).reshape(-1, 4)
    overlaps = box_iou(dets, refs)
    ignored = box_iou(dets, ignore if ignore is not None else np.zeros((0, 4))).max(axis=1, initial=0.0)
    used: set[int] = set()
    result = PhotoMatch()
    for row, det in enumerate(order):
        candidates = [(overlaps[row, j], j) for j in range(len(refs)) if j not in used and overlaps[row, j] >= iou]
        if candidates:
            _, best = max(candidates)
            used.add(best)
            result.pairs.append((det, best))
        elif ignored[row] < iou:
            result.false_positives += 1
    result.misses = len(refs) - len(used)
    return result


@dataclass
class DetectionScore:
    """Totals over photos at one score threshold."""

    threshold: float
    references: int = 0
    hits: int = 0
    false_positives: int = 0
    errors: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready figures; ``None`` where a figure is undefined (no reference, no detection, no match)."""
        found = self.hits + self.false_positives
        errs = np.array(self.errors)
        return {
            "threshold": self.threshold,
            "reference_faces": self.references,
            "recall": round(self.hits / self.references, 4) if self.references else None,
            "precision": round(self.hits / found, 4) if found else None,
            "false_positives": self.false_positives,
            "nme_mean": round(float(np.mean(errs)), 4) if len(errs) else None,
            "nme_median": round(float(np.median(errs)), 4) if len(errs) else None,
            "nme_p90": round(float(np.percentile(errs, 90)), 4) if len(errs) else None,
        }


def score_detections(
    detections: Sequence[Sequence[Face]],
    references: Sequence[Sequence[Face]],
    ignore: Sequence[np.ndarray] | None = None,
    thresholds: Sequence[float] = (0.3, 0.4, 0.5, 0.6),
    iou: float = 0.5,
) -> list[DetectionScore]:
    """Recall, precision and NME of detections (found at the lowest threshold) at each score threshold."""
    scores = []
    for threshold in thresholds:
        score = DetectionScore(threshold)
        for i, (found, refs) in enumerate(zip(detections, references, strict=True)):
            kept = [f for f in found if f.probability >= threshold]
            m = match_faces(kept, refs, None if ignore is None else ignore[i], iou)
            score.references += len(refs)
            score.hits += len(m.pairs)
            score.false_positives += m.false_positives
            score.errors.extend(nme(kept[d].landmarks, refs[r].landmarks) for d, r in m.pairs)
        scores.append(score)
    return scores


def time_detector(detect_batch: Callable[[Sequence[np.ndarray]], object], images: Sequence[np.ndarray], batch_size: int) -> float:
    """Images per second of ``detect_batch`` over ``images`` in chunks of ``batch_size`` (1: one at a time)."""
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        detect_batch(images[first : first + batch_size])
    return len(images) / (time.perf_counter() - start)
