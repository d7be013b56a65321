"""Alignment: a detected face becomes a fixed-size RGB crop.

Two methods, chosen by :class:`~faceops.face.config.AlignConfig`:

* ``similarity``: the 5 landmarks are mapped onto a canonical template by a least-squares similarity transform
  (rotation, uniform scale, translation; Umeyama 1991), which removes in-plane head roll.
* ``crop``: facenet-pytorch's box crop (no rotation), for comparison and for models trained that way.

Both frame the face the same way: the face occupies ``image_size / (1 + margin)`` of the crop's side, centred.
The template is the mean landmark layout of MTCNN faces relative to their box centre and box size (geometric
mean of the sides), measured on LFW (``benchmarks/preprocess_sweep.py``), so the two methods frame alike and
differ only in the roll correction.
"""

from __future__ import annotations

import cv2
import numpy as np

from faceops.face.config import AlignConfig
from faceops.face.detection import Face
from faceops.face.illumination import normalize_illumination

__all__ = ["ARCFACE_112", "TEMPLATE", "align_face", "align_faces", "similarity_transform"]

# Landmarks (left eye, right eye, nose, left / right mouth corner) relative to the MTCNN box centre, in units
# of the box size. Measured by benchmarks/preprocess_sweep.py on the 737 photos of LFW pairs fold 3.
TEMPLATE = np.array(
    [
        [-0.1880, -0.1290],
        [0.2025, -0.1370],
        [0.0067, 0.0959],
        [-0.1598, 0.2938],
        [0.1880, 0.2875],
    ],
    dtype=np.float64,
)

# The reference landmarks of ArcFace-style models (insightface; MobileFaceNet uses them too) in a 112x112 crop.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity transform that best maps ``src`` points onto ``dst`` (least squares, Umeyama)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align_face(image: np.ndarray, face: Face, config: AlignConfig | None = None) -> np.ndarray:
    """The ``image_size`` x ``image_size`` RGB ``uint8`` crop of one face."""
    config = config or AlignConfig()
    size = config.image_size
    if config.method == "similarity":
        arcface = config.template == "arcface"
        dst = ARCFACE_112 * (size / 112.0) if arcface else TEMPLATE * (size / (1.0 + config.margin)) + size / 2.0
        matrix = similarity_transform(face.landmarks, dst)
        crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    else:
        crop = _box_crop(image, face, config)
    return normalize_illumination(crop, config.illumination)


def align_faces(image: np.ndarray, faces: list[Face], config: AlignConfig | None = None) -> np.ndarray:
    """Crops of several faces of one image, stacked as (N, S, S, 3)."""
    config = config or AlignConfig()
    if not faces:
        return np.zeros((0, config.image_size, config.image_size, 3), dtype=np.uint8)
    return np.stack([align_face(image, f, config) for f in faces])


def _box_crop(image: np.ndarray, face: Face, config: AlignConfig) -> np.ndarray:
    height, width = image.shape[:2]
    x1, y1, x2, y2 = face.box
    side_x, side_y = (x2 - x1) * config.margin / 2, (y2 - y1) * config.margin / 2
    left, top = int(max(x1 - side_x, 0)), int(max(y1 - side_y, 0))
    right, bottom = int(min(x2 + side_x, width)), int(min(y2 + side_y, height))
    if right <= left or bottom <= top:
        left, top, right, bottom = 0, 0, width, height
    crop = image[top:bottom, left:right]
    return cv2.resize(crop, (config.image_size, config.image_size), interpolation=cv2.INTER_AREA)
