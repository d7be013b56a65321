"""1:1 verification: two photos, or a whole pairs protocol (LFW's ``pairs.txt``) scored in batches.

Images with no detected face still count in a protocol run. They are handled by ``no_face``:

* ``"reject"`` (default): the pair gets score -1, so it is judged "different" (an error if it is a genuine pair);
* ``"center"``: the centre of the photo is embedded as if it were the face (LFW photos are centred on the
  subject), framed like a face box of ``center_fraction`` of the shorter side.

Either way the run reports how many images had no face.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from faceops.errors import NoFaceDetected
from faceops.evaluation.metrics import VerificationReport, verification_report
from faceops.evaluation.pairs import Pair
from faceops.face.alignment import align_face
from faceops.face.detection import Face
from faceops.face.images import load_image
from faceops.face.recognizer import FaceRecognizer

__all__ = ["PairScores", "score_pairs", "verify_images"]

NoFacePolicy = Literal["reject", "center"]


@dataclass
class PairScores:
    """Scored pairs of a protocol run."""

    scores: np.ndarray
    labels: np.ndarray
    folds: np.ndarray
    no_face: list[str]
    unreadable: dict[str, str]

    def report(self, far_targets: tuple[float, ...] = (1e-2, 1e-3)) -> VerificationReport:
        return verification_report(self.scores, self.labels, self.folds, far_targets)


def verify_images(recognizer: FaceRecognizer, a: object, b: object) -> float:
    """Cosine similarity of the subject faces of two photos (raises ``InvalidImage`` / ``NoFaceDetected``)."""
    ea = recognizer.embed_subject(a)  # type: ignore[arg-type]
    eb = recognizer.embed_subject(b)  # type: ignore[arg-type]
    return float(ea.embedding @ eb.embedding)


def _center_face(image: np.ndarray, fraction: float) -> Face:
    height, width = image.shape[:2]
    side = min(height, width) * fraction
    cx, cy = width / 2, height / 2
    box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    from faceops.face.alignment import TEMPLATE

    landmarks = (TEMPLATE * side + np.array([cx, cy])).astype(np.float32)
    return Face(box=box, probability=0.0, landmarks=landmarks)


def score_pairs(
    recognizer: FaceRecognizer,
    pairs: Sequence[Pair],
    no_face: NoFacePolicy = "reject",
    center_fraction: float = 0.45,
    progress: Callable[[int], None] | None = None,
) -> PairScores:
    """Embed every distinct image of the pairs once (batched) and score each pair by cosine similarity."""
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    index = {p: i for i, p in enumerate(paths)}
    crops, _, errors = recognizer.subject_crops(paths, progress=progress)
    missing: list[str] = []
    unreadable: dict[str, str] = {}
    valid = np.ones(len(paths), dtype=bool)
    for i, exc in errors.items():
        if isinstance(exc, NoFaceDetected):
            missing.append(str(paths[i]))
            if no_face == "center":
                image = load_image(paths[i])
                crops[i] = align_face(image, _center_face(image, center_fraction), recognizer.config.align)
                continue
        else:
            unreadable[str(paths[i])] = str(exc)
        valid[i] = False
    embeddings = np.zeros((len(paths), recognizer.embedder.dim), dtype=np.float32)
    if valid.any():
        embeddings[valid] = recognizer.embedder.embed(crops[valid])
    scores = np.array(
        [
            float(embeddings[index[p.a]] @ embeddings[index[p.b]]) if valid[index[p.a]] and valid[index[p.b]] else -1.0
            for p in pairs
        ]
    )
    return PairScores(
        scores=scores,
        labels=np.array([p.same for p in pairs], dtype=int),
        folds=np.array([p.fold for p in pairs]),
        no_face=missing,
        unreadable=unreadable,
    )
