"""Verification figures per group of pairs: skin tone, pose, expression, brightness, quality, user attributes.

A pair belongs to the group of its **probe** (the second image of the pair, the one the robustness suite
degrades), so every pair is counted once per grouping and an impostor pair of two groups is judged with its
probe's group. Per group: FRR and FAR at the model's own threshold with Wilson 95 % intervals, TAR at the
target FAR (threshold recalibrated on the group's impostors; only when there are at least ``1 / target FAR``
of them), AUC, and the group size. A group with fewer than ``min_pairs`` genuine or impostor pairs is reported
with ``status = "insufficient"``: it is shown, never silently passed, and excluded from the worst group / gap.

Groupings measured from the photo (:func:`face_measures`, on the clean image and its MTCNN landmarks):

==========  ============================================================================================
skin_tone   ITA of a cheek patch (:mod:`faceops.data.bias`), in Chardon's six categories; an appearance
            proxy that depends on lighting, not a statement about anyone's ethnicity
pose        yaw proxy: the nose's offset from the eye midpoint along the eye line, in eye distances;
            ``frontal`` < 0.1 <= ``turned`` < 0.25 <= ``profile``
expression  MTCNN gives five points (no lip landmarks), so mouth *opening* cannot be measured; the proxy is
            mouth-corner spread over eye distance (smiles and open mouths widen it): ``neutral`` < 0.9
            <= ``wide`` < 1.0 <= ``very wide``
brightness  mean luma of the aligned crop: ``dark`` < 80 <= ``normal`` < 160 <= ``bright``
quality     sharpness of the aligned crop (variance of the Laplacian): ``blurred`` < 80 <= ``soft`` < 200
            <= ``sharp``
==========  ============================================================================================

The bin edges are fixed, so a group means the same for every model and data version; they were set from LFW's
distribution (fold 2), whose outer bins hold a minority of its photos (roughly 3-20 %).

**Attribute CSV** (user groups, e.g. LFW's public attribute annotations binned into labels): a UTF-8 CSV with
a header; the column ``image`` holds image paths relative to the data root (``Aaron_Eckhart/
Aaron_Eckhart_0001.jpg``), every other column is one grouping whose cells are labels (``female``, ``40-60``,
...). An empty cell means unknown (the image is left out of that grouping). Errors name the offending lines:
a missing ``image`` column, an image that is not a file under the root, the same image twice, a label longer
than 64 characters or with control characters, a column with more than 50 distinct labels (bin numbers
first).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceops.errors import DataValidationFailed
from faceops.evaluation.metrics import threshold_at_far

__all__ = [
    "ATTRIBUTES_FILE",
    "GROUPINGS",
    "GroupReport",
    "face_measures",
    "group_bins",
    "group_metrics",
    "pair_metrics",
    "read_attributes",
    "wilson_interval",
]

ATTRIBUTES_FILE = "attributes.csv"
GROUPINGS = ("skin_tone", "pose", "expression", "brightness", "quality")
_MAX_LABELS = 50


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default); ``(nan, nan)`` when ``n`` is 0."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def pair_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float, target_far: float, min_pairs: int = 20) -> dict[str, Any]:
    """FRR / FAR at ``threshold`` with Wilson intervals, TAR at ``target_far``, AUC, sizes and a status.

    ``status`` is ``"insufficient"`` when there are fewer than ``min_pairs`` genuine or impostor pairs; the
    figures that can still be computed are kept so a reader sees what little there is.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
    genuine, impostors = int(labels.sum()), int((1 - labels).sum())
    out: dict[str, Any] = {"pairs": len(labels), "genuine": genuine, "impostors": impostors}
    # None rather than NaN where a rate has no pairs: the report stays valid JSON and comparable
    out["frr"] = out["frr_ci"] = out["far"] = out["far_ci"] = None
    if genuine:
        frr = float(np.mean(scores[labels == 1] < threshold))
        out["frr"], out["frr_ci"] = frr, list(wilson_interval(int(round(frr * genuine)), genuine))
    if impostors:
        far = float(np.mean(scores[labels == 0] >= threshold))
        out["far"], out["far_ci"] = far, list(wilson_interval(int(round(far * impostors)), impostors))
    out["tar_at_far"] = None
    if genuine and impostors >= math.ceil(1 / target_far):
        t = threshold_at_far(scores[labels == 0], target_far)
        out["tar_at_far"] = float(np.mean(scores[labels == 1] >= t))
    out["auc"] = None
    if genuine and impostors:
        from sklearn.metrics import roc_auc_score

        out["auc"] = float(roc_auc_score(labels, scores))
    out["status"] = "ok" if min(genuine, impostors) >= min_pairs else "insufficient"
    return out


def _yaw(landmarks: np.ndarray) -> float:
    eye_vec = landmarks[1] - landmarks[0]
    distance = float(np.hypot(*eye_vec)) or 1.0
    return float(np.dot(landmarks[2] - (landmarks[0] + landmarks[1]) / 2, eye_vec) / distance**2)


def face_measures(image: np.ndarray, face: Any, crop: np.ndarray) -> dict[str, float]:
    """What the groupings bin, for one clean photo, its MTCNN ``face`` and the aligned ``crop``."""
    from faceops.data.bias import skin_tone_ita
    from faceops.face.quality import crop_quality

    landmarks = np.asarray(face.landmarks, dtype=np.float64)
    eyes = float(np.linalg.norm(landmarks[1] - landmarks[0])) or 1.0
    brightness, blur = crop_quality(crop)
    return {
        "ita": skin_tone_ita(image, face),
        "yaw": _yaw(landmarks),
        "mouth_spread": float(np.linalg.norm(landmarks[4] - landmarks[3])) / eyes,
        "brightness": brightness,
        "blur": blur,
    }


def _bin(value: float, edges: Sequence[float], names: Sequence[str]) -> str:
    if value != value:
        return "unknown"
    return names[int(np.searchsorted(np.asarray(edges), value, side="right"))]


def group_bins(measures: Mapping[str, float]) -> dict[str, str]:
    """The group of each measured grouping (see the module docstring for the bins)."""
    from faceops.data.bias import ita_category

    return {
        "skin_tone": ita_category(measures["ita"]),
        "pose": _bin(abs(measures["yaw"]), (0.1, 0.25), ("frontal", "turned", "profile")),
        "expression": _bin(measures["mouth_spread"], (0.9, 1.0), ("neutral", "wide", "very wide")),
        "brightness": _bin(measures["brightness"], (80, 160), ("dark", "normal", "bright")),
        "quality": _bin(measures["blur"], (80, 200), ("blurred", "soft", "sharp")),
    }


@dataclass
class GroupReport:
    """Per-group figures of one grouping."""

    grouping: str
    groups: dict[str, dict[str, Any]]
    worst_group: str | None
    largest_gap: float | None
    overall: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "grouping": self.grouping,
            "overall": self.overall,
            "groups": self.groups,
            "worst_group": self.worst_group,
            "largest_frr_gap": self.largest_gap,
        }


def group_metrics(
    grouping: str,
    groups: Sequence[str | None],
    scores: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    target_far: float,
    min_pairs: int = 20,
) -> GroupReport:
    """Figures of each group of pairs (``groups[i]`` is pair ``i``'s group, ``None`` / ``"unknown"`` left out).

    The worst group is the one with the highest FRR at the threshold among the groups with enough pairs;
    the largest gap is the difference between the highest and lowest FRR among them.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
    names = np.array(["" if g is None or g == "unknown" else str(g) for g in groups], dtype=object)
    table = {
        name: pair_metrics(scores[names == name], labels[names == name], threshold, target_far, min_pairs)
        for name in sorted(set(names) - {""})
    }
    judged = {k: v for k, v in table.items() if v["status"] == "ok"}
    worst = max(judged, key=lambda k: judged[k]["frr"]) if judged else None
    gap = (max(v["frr"] for v in judged.values()) - min(v["frr"] for v in judged.values())) if judged else None
    overall = pair_metrics(scores, labels, threshold, target_far, min_pairs)
    return GroupReport(grouping, table, worst, gap, overall)


def read_attributes(path: str | Path, root: str | Path) -> dict[str, dict[str, str]]:
    """The attribute CSV (format in the module docstring) as ``{attribute: {image path: label}}``.

    Raises:
        DataValidationFailed: naming the offending lines or column.
    """
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise DataValidationFailed(f"attribute file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "image" not in columns:
            raise DataValidationFailed(f"{path}: needs a column 'image' (paths relative to {root}); has {columns}")
        attributes = [c for c in columns if c != "image"]
        if not attributes:
            raise DataValidationFailed(f"{path}: no attribute columns besides 'image'")
        out: dict[str, dict[str, str]] = {a: {} for a in attributes}
        problems: list[str] = []
        seen: dict[str, int] = {}
        for line, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): v for k, v in raw.items()}
            if "" in row or any(v is None for v in row.values()):
                problems.append(f"line {line}: {len(raw)} fields, the header has {len(columns)}")
                continue
            image = (row["image"] or "").strip()
            if not image or not (root / image).is_file():
                problems.append(f"line {line}: image {image!r} is not a file under {root}")
                continue
            if image in seen:
                problems.append(f"line {line}: image {image!r} already on line {seen[image]}")
                continue
            seen[image] = line
            for attribute in attributes:
                value = (row[attribute] or "").strip()
                if not value:
                    continue
                if len(value) > 64 or not value.isprintable():
                    problems.append(f"line {line}: {attribute}={value[:20]!r}... is not a label")
                    continue
                out[attribute][image] = value
    for attribute, values in out.items():
        labels = set(values.values())
        if len(labels) > _MAX_LABELS:
            problems.append(f"column {attribute!r}: {len(labels)} distinct labels (> {_MAX_LABELS}); bin it first")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise DataValidationFailed(f"{path}: {len(problems)} bad rows/columns: {shown}")
    return out
