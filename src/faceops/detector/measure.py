"""What the detector gate reads: a detector measured by what it feeds, side by side with another on the same data.

* **LFW verification**: the subject face of each photo of the chosen pairs from the detector, aligned and embedded
  by one embedder (a model bundle's network, alignment and normalisation, unchanged): accuracy by LFW's protocol
  (each fold at the threshold chosen on the others; one fold: at its own best threshold), AUC, TAR at FAR 1e-3.
  A photo where the detector finds no face scores -1 (its pairs are judged "different"), as the project counts
  misses.
* **Multi-face recall**: on the photos of ``multiface/faces.csv``, which give the faces counted by eye (not boxes),
  the faces found per photo, at most the eye count, over the eye count. A detector that fires on background can
  reach the count without finding the faces; the figure is a count, and the gate reads it beside verification.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceops.errors import DatasetError
from faceops.evaluation.metrics import accuracy_at_threshold, best_accuracy_threshold, verification_report
from faceops.evaluation.pairs import Pair, read_lfw_pairs
from faceops.face.detection import Detector
from faceops.face.images import load_image
from faceops.face.recognizer import FaceRecognizer

if TYPE_CHECKING:
    from faceops.evaluation.bundle import ModelBundle
    from faceops.face.embedding import Embedder

__all__ = ["lfw_verification", "measure_detector", "multiface_recall", "select_pairs"]


def select_pairs(pairs_file: str | Path, lfw_root: str | Path, folds: Sequence[int], per_fold: int = 0) -> list[Pair]:
    """LFW pairs of ``folds``; ``per_fold`` > 0 keeps that many of each fold, half matched and half mismatched."""
    pairs = read_lfw_pairs(pairs_file, lfw_root, list(folds))
    if per_fold <= 0:
        return pairs
    half = max(1, per_fold // 2)
    kept: list[Pair] = []
    for fold in folds:
        of_fold = [p for p in pairs if p.fold == fold]
        kept += [p for p in of_fold if p.same][:half] + [p for p in of_fold if not p.same][:half]
    return kept


def lfw_verification(
    detector: Detector, bundle: ModelBundle, pairs: Sequence[Pair], embedder: Embedder | None = None
) -> dict[str, Any]:
    """Verification figures of ``pairs`` with ``detector``'s faces feeding ``bundle``'s embedder."""
    from faceops.face.embedding import Embedder

    if not pairs:
        raise DatasetError("no LFW pairs to measure the detector on")
    embedder = embedder or Embedder(bundle.preprocess.embedder, model=bundle.backbone, model_id=bundle.model_id)
    recognizer = FaceRecognizer(bundle.preprocess, embedder=embedder, detector=detector)
    photos = sorted({str(p) for pair in pairs for p in (pair.a, pair.b)})
    result = recognizer.embed_subjects(photos)
    index = {path: i for i, path in enumerate(photos)}
    ok = result.ok
    scores = np.array(
        [
            float(result.embeddings[index[str(p.a)]] @ result.embeddings[index[str(p.b)]])
            if ok[index[str(p.a)]] and ok[index[str(p.b)]]
            else -1.0
            for p in pairs
        ]
    )
    labels = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    report = verification_report(scores, labels, folds, far_targets=(1e-3,))
    if report.accuracy_mean is not None:
        accuracy = report.accuracy_mean
    else:
        accuracy = accuracy_at_threshold(scores, labels, best_accuracy_threshold(scores, labels))
    return {
        "lfw_accuracy": round(float(accuracy), 6),
        "lfw_auc": round(float(report.auc), 6),
        "lfw_tar_at_far_0.001": round(float(report.tar_at_far["0.001"]), 6),
        "lfw_pairs": len(pairs),
        "lfw_folds": sorted({int(f) for f in folds}),
        "lfw_photos_without_face": len(result.errors),
    }


def multiface_recall(detector: Detector, faces_csv: str | Path) -> dict[str, Any]:
    """Faces found on the multi-face photos (per photo at most the count by eye) over the count by eye."""
    faces_csv = Path(faces_csv)
    if not faces_csv.is_file():
        raise DatasetError(f"multi-face list not found: {faces_csv}")
    with faces_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DatasetError(f"{faces_csv}: no photos listed")
    photos: list[dict[str, Any]] = []
    for row in rows:
        try:
            counted = int(row["faces_counted_by_eye"])
            found = len(detector.detect(load_image(faces_csv.parent / row["file"])))
        except (KeyError, ValueError) as exc:
            raise DatasetError(f"{faces_csv}: a row without file / faces_counted_by_eye ({exc})") from exc
        photos.append({"file": row["file"], "by_eye": counted, "found": found})
    counted_total = sum(int(p["by_eye"]) for p in photos)
    hits = sum(min(int(p["found"]), int(p["by_eye"])) for p in photos)
    return {
        "multiface_recall": round(hits / max(counted_total, 1), 6),
        "multiface_faces_by_eye": counted_total,
        "multiface_found": sum(int(p["found"]) for p in photos),
        "multiface_photos": photos,
    }


def measure_detector(
    detector: Detector,
    bundle: ModelBundle,
    pairs: Sequence[Pair],
    faces_csv: str | Path,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """Everything the detector gate reads (:mod:`faceops.detector.gate`), in one dict."""
    return {**lfw_verification(detector, bundle, pairs, embedder), **multiface_recall(detector, faces_csv)}
