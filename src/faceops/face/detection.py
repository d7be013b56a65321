"""Face detection with facenet-pytorch's MTCNN: every face with its box, probability and 5 landmarks.

Images are batched through MTCNN in groups of equal size (MTCNN's batching needs equal shapes); very large photos
are scaled down for detection only, and the boxes and landmarks are scaled back to the original pixels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from faceops.errors import NoFaceDetected
from faceops.face.config import DetectorConfig
from faceops.face.device import resolve_device

__all__ = ["Face", "FaceDetector", "select_subject"]

# Photos whose longer side is above this are scaled down for detection (faces stay far above min_face_size).
_MAX_DETECT_SIDE = 1600


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    Attributes:
        box: (x1, y1, x2, y2).
        probability: MTCNN's face score.
        landmarks: (5, 2) array: left eye, right eye, nose, left mouth corner, right mouth corner
            (left/right as seen in the image).
    """

    box: tuple[float, float, float, float]
    probability: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """Face size: the geometric mean of the box sides, in pixels."""
        return float(np.sqrt(max(self.width, 0.0) * max(self.height, 0.0)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "probability": round(float(self.probability), 6),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


class FaceDetector:
    """MTCNN over single images or batches.

    Args:
        config: thresholds, minimum face size and the subject policy.
        device: torch device string; ``None`` uses the settings' device.
    """

    def __init__(self, config: DetectorConfig | None = None, device: str | None = None) -> None:
        from facenet_pytorch import MTCNN

        self.config = config or DetectorConfig()
        self.device = resolve_device(device)
        self._mtcnn = MTCNN(
            min_face_size=self.config.min_face_size,
            thresholds=list(self.config.thresholds),
            factor=self.config.factor,
            keep_all=True,
            device=self.device,
        )

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in one RGB ``uint8`` image, most probable first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[list[Face]]:
        """All faces in each image; images of equal shape go through MTCNN together.

        An image (after scaling very large ones down) whose shorter side is under ``min_face_size`` has no faces.
        """
        results: list[list[Face]] = [[] for _ in images]
        prepared: list[tuple[np.ndarray, float]] = [_scale_for_detection(img) for img in images]
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, (small, _) in enumerate(prepared):
            # MTCNN's pyramid has no level for an image whose shorter side is under the minimum face size (and
            # facenet-pytorch then fails on an empty torch.cat): such an image cannot hold a detectable face.
            if min(small.shape[:2]) >= self.config.min_face_size:
                groups[small.shape].append(index)
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                stack = np.stack([prepared[i][0] for i in chunk])
                boxes, probs, points = self._mtcnn.detect(stack, landmarks=True)
                for i, b, p, pts in zip(chunk, boxes, probs, points, strict=True):
                    results[i] = self._faces(b, p, pts, 1.0 / prepared[i][1])
        return results

    def detect_subject(self, image: np.ndarray, source: str | None = None) -> Face:
        """The subject face of a photo by the configured policy; raises :class:`NoFaceDetected`."""
        face = select_subject(self.detect(image), image.shape, self.config.subject)
        if face is None:
            raise NoFaceDetected(source)
        return face

    def _faces(self, boxes: Any, probs: Any, points: Any, scale: float) -> list[Face]:
        if boxes is None:
            return []
        faces = [
            Face(
                box=tuple(float(v) * scale for v in box),  # type: ignore[arg-type]
                probability=float(prob),
                landmarks=np.asarray(pts, dtype=np.float32) * scale,
            )
            for box, prob, pts in zip(boxes, probs, points, strict=True)
            if prob is not None and float(prob) >= self.config.min_probability
        ]
        return sorted(faces, key=lambda f: -f.probability)


def _scale_for_detection(image: np.ndarray) -> tuple[np.ndarray, float]:
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= _MAX_DETECT_SIDE:
        return image, 1.0
    scale = _MAX_DETECT_SIDE / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def select_subject(faces: Sequence[Face], image_shape: tuple[int, ...], policy: str) -> Face | None:
    """Pick the subject face of a photo.

    Args:
        faces: candidate faces.
        image_shape: (H, W, ...) of the image they were found in.
        policy: 'largest' (box area), 'center' (closest box centre to the image centre) or 'center_weighted'
            (area minus twice the squared centre offset, as facenet-pytorch's ``center_weighted_size``).
    """
    if not faces:
        return None
    height, width = image_shape[:2]
    boxes = np.array([f.box for f in faces], dtype=np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    offset_sq = ((centres - np.array([width / 2, height / 2])) ** 2).sum(axis=1)
    if policy == "largest":
        score = areas
    elif policy == "center":
        score = -offset_sq
    elif policy == "center_weighted":
        score = areas - 2.0 * offset_sq
    else:
        raise ValueError(f"unknown subject policy {policy!r}")
    return faces[int(np.argmax(score))]
