"""Seeded, parameterised image conditions for robustness tests and condition-matched augmentation.

Each condition takes a whole photo (``(H, W, 3)`` RGB ``uint8``, before detection) and returns a degraded
photo of the same shape and dtype. One number, ``severity`` in ``[0, 1]``, drives its strength (0 is mild or
none, 1 the hardest setting we test); :data:`CONDITIONS` holds each condition's default severity, and
:func:`condition_params` says what a severity means in physical units (gamma, sigma, JPEG quality, ...), so a
report can state them. Randomness (noise pixels, blur direction, rotation sign, occluder shade) comes only from
the ``rng`` argument: the same seed gives the same image.

Sizes are relative to the face, so a condition means the same on a 250 px LFW photo and a 1080p frame. The
face comes from ``landmarks`` (MTCNN's five points: eyes, nose, mouth corners) when given, otherwise from a
centred-face layout measured on LFW (the eyes at 42 % / 59 % of the width and 45 % of the height).

=================  ===========================================================================================
underexposure      gamma ``1 + 1.5 s`` then gain ``1 - 0.7 s`` (darker, crushed shadows)
overexposure       gamma ``1 / (1 + 1.5 s)`` then gain ``1 + 0.8 s``, clipped (brighter, washed-out highlights)
low_contrast       pixels pulled towards the mean grey by ``1 - 0.85 s``
gaussian_blur      Gaussian blur, sigma ``s * face / 25`` px (2.4 px on a 100 px face at the default)
motion_blur        a line kernel ``1 + s * face / 4`` px long at a random angle
noise              additive Gaussian sensor noise, sigma ``40 s`` grey levels per channel
jpeg               JPEG re-encoding at quality ``30 - 20 s`` (30 ... 10)
downscale          face down to ``48 - 24 s`` px wide (48 ... 24) and back up (detail lost, size kept)
rotation           in-plane rotation by ``40 s`` degrees about the face centre, random sign
occlusion_eyes     a dark band over both eyes (sunglasses-like), ``0.4 + 0.6 s`` eye distances tall
occlusion_lower    a light block over the mouth and chin (mask-like), from ``1 - 0.6 s`` of the way nose->mouth
greyscale          colour removed, blended by ``s`` (1: fully grey)
=================  ===========================================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import cv2
import numpy as np

from faceops.errors import ConfigError, InvalidImage

__all__ = ["CONDITIONS", "ConditionSpec", "apply_condition", "condition_params"]

# Median MTCNN landmarks on LFW photos as fractions of (width, height): left eye, right eye, nose, mouth left, mouth right.
_CENTRED_LANDMARKS = np.array([[0.42, 0.45], [0.59, 0.45], [0.52, 0.55], [0.44, 0.63], [0.59, 0.63]])
_FACE_PER_EYE_DISTANCE = 2.5  # face width / inter-ocular distance, about 2.5 for MTCNN boxes


@dataclass(frozen=True)
class ConditionSpec:
    """A named condition.

    Attributes:
        default_severity: the severity used when none is given.
        description: what the condition simulates.
    """

    default_severity: float
    description: str


@dataclass(frozen=True)
class _Face:
    landmarks: np.ndarray  # (5, 2) in pixels

    @property
    def eye_distance(self) -> float:
        return max(float(np.linalg.norm(self.landmarks[1] - self.landmarks[0])), 2.0)

    @property
    def width(self) -> float:
        return self.eye_distance * _FACE_PER_EYE_DISTANCE

    @property
    def centre(self) -> tuple[float, float]:
        x, y = self.landmarks.mean(axis=0)
        return float(x), float(y)


def _lut(image: np.ndarray, curve: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    levels = np.arange(256, dtype=np.float64) / 255.0
    table = np.clip(np.rint(curve(levels) * 255.0), 0, 255).astype(np.uint8)
    return cv2.LUT(image, table)


def _underexposure(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    return _lut(img, lambda x: p["gain"] * x ** p["gamma"])


def _overexposure(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    return _lut(img, lambda x: p["gain"] * x ** p["gamma"])


def _low_contrast(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    mean = img.reshape(-1, 3).mean(axis=0)
    out = mean + p["contrast"] * (img.astype(np.float32) - mean)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _gaussian_blur(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    sigma = p["sigma_faces"] * face.width
    return img.copy() if sigma < 0.05 else cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)


def _motion_blur(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    length = max(1, int(round(1 + p["length_faces"] * face.width)))
    angle = float(rng.uniform(0.0, 180.0))
    if length == 1:
        return img.copy()
    kernel = np.zeros((length, length), dtype=np.float32)
    kernel[length // 2, :] = 1.0
    centre = ((length - 1) / 2.0, (length - 1) / 2.0)
    rotated = np.asarray(cv2.warpAffine(kernel, cv2.getRotationMatrix2D(centre, angle, 1.0), (length, length)), dtype=np.float32)
    rotated = rotated / max(float(rotated.sum()), 1e-6)
    return cv2.filter2D(img, -1, rotated, borderType=cv2.BORDER_REFLECT_101)


def _noise(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    out = img.astype(np.float32) + rng.normal(0.0, p["sigma"], size=img.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(p["quality"])])
    if not ok:  # pragma: no cover - OpenCV's JPEG encoder does not fail on a valid uint8 image
        raise InvalidImage("JPEG encoding failed")
    decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if decoded is None:  # pragma: no cover - the bytes just came from the encoder
        raise InvalidImage("JPEG decoding failed")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def _downscale(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    h, w = img.shape[:2]
    factor = min(1.0, p["face_px"] / face.width)
    small = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    down = cv2.resize(img, small, interpolation=cv2.INTER_AREA)
    return cv2.resize(down, (w, h), interpolation=cv2.INTER_LINEAR)


def _rotation(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    angle = p["degrees"] * (1.0 if rng.random() < 0.5 else -1.0)
    h, w = img.shape[:2]
    matrix = cv2.getRotationMatrix2D(face.centre, angle, 1.0)
    return cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _fill(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, shade: int) -> np.ndarray:
    h, w = img.shape[:2]
    out = img.copy()
    out[max(0, int(y0)) : min(h, int(np.ceil(y1))), max(0, int(x0)) : min(w, int(np.ceil(x1)))] = shade
    return out


def _occlusion_eyes(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    eyes = face.landmarks[:2]
    cx, cy = eyes.mean(axis=0)
    d = face.eye_distance
    half_h = p["height_eye_distances"] * d / 2.0
    return _fill(img, cx - d, cy - half_h, cx + d, cy + half_h, int(rng.integers(0, 40)))


def _occlusion_lower(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    nose, mouth = face.landmarks[2], face.landmarks[3:].mean(axis=0)
    d = face.eye_distance
    top = nose[1] + p["top_nose_to_mouth"] * (mouth[1] - nose[1])
    return _fill(img, mouth[0] - 1.1 * d, top, mouth[0] + 1.1 * d, mouth[1] + 1.0 * d, int(rng.integers(170, 230)))


def _greyscale(img: np.ndarray, p: dict[str, float], rng: np.random.Generator, face: _Face) -> np.ndarray:
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB).astype(np.float32)
    out = p["amount"] * grey + (1.0 - p["amount"]) * img.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


_Fn = Callable[[np.ndarray, dict[str, float], np.random.Generator, _Face], np.ndarray]

# name -> (default severity, description, severity -> physical parameters, implementation)
_TABLE: dict[str, tuple[float, str, Callable[[float], dict[str, float]], _Fn]] = {
    "underexposure": (
        0.6,
        "dark photo (gamma and gain below 1)",
        lambda s: {"gamma": 1 + 1.5 * s, "gain": 1 - 0.7 * s},
        _underexposure,
    ),
    "overexposure": (
        0.6,
        "bright, washed-out photo (gamma below 1, gain above 1)",
        lambda s: {"gamma": 1 / (1 + 1.5 * s), "gain": 1 + 0.8 * s},
        _overexposure,
    ),
    "low_contrast": (0.7, "flat lighting / haze (pixels pulled to the mean)", lambda s: {"contrast": 1 - 0.85 * s}, _low_contrast),
    "gaussian_blur": (0.6, "out of focus", lambda s: {"sigma_faces": s / 25}, _gaussian_blur),
    "motion_blur": (0.6, "camera or subject motion", lambda s: {"length_faces": s / 4}, _motion_blur),
    "noise": (0.5, "sensor noise (low light, high ISO)", lambda s: {"sigma": 40 * s}, _noise),
    "jpeg": (0.5, "heavy JPEG compression", lambda s: {"quality": float(round(30 - 20 * s))}, _jpeg),
    "downscale": (0.5, "a small, far-away face", lambda s: {"face_px": 48 - 24 * s}, _downscale),
    "rotation": (0.5, "in-plane head tilt / camera roll", lambda s: {"degrees": 40 * s}, _rotation),
    "occlusion_eyes": (0.6, "sunglasses or a band over the eyes", lambda s: {"height_eye_distances": 0.4 + 0.6 * s}, _occlusion_eyes),
    "occlusion_lower": (0.6, "a mask or hand over mouth and chin", lambda s: {"top_nose_to_mouth": 1 - 0.6 * s}, _occlusion_lower),
    "greyscale": (1.0, "a monochrome camera", lambda s: {"amount": s}, _greyscale),
}

CONDITIONS: Mapping[str, ConditionSpec] = MappingProxyType(
    {name: ConditionSpec(default, text) for name, (default, text, _, _) in _TABLE.items()}
)
"""Every condition by name, with its default severity and what it simulates."""


def _check(name: str, severity: float | None) -> float:
    if name not in _TABLE:
        raise ConfigError(f"unknown image condition {name!r}; known: {', '.join(_TABLE)}")
    value = _TABLE[name][0] if severity is None else float(severity)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"severity of condition {name!r} must be in [0, 1], got {severity!r}")
    return value


def condition_params(name: str, severity: float | None = None) -> dict[str, float]:
    """The physical parameters a condition uses at ``severity`` (its default when ``None``), for reports."""
    value = _check(name, severity)
    return {"severity": value, **_TABLE[name][2](value)}


def apply_condition(
    image: np.ndarray,
    name: str,
    rng: np.random.Generator,
    severity: float | None = None,
    landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """One condition applied to a whole photo.

    Args:
        image: ``(H, W, 3)`` RGB ``uint8``; not modified.
        name: a key of :data:`CONDITIONS`.
        rng: the only source of randomness (use ``np.random.default_rng(seed)`` for a reproducible image).
        severity: in ``[0, 1]``; the condition's default when ``None``.
        landmarks: the subject's five MTCNN landmarks in image pixels, which place occluders and scale blur and
            downscaling to the face; without them the face is assumed centred as in LFW.

    Returns:
        A new ``(H, W, 3)`` RGB ``uint8`` array.

    Raises:
        ConfigError: an unknown condition or a severity outside ``[0, 1]``.
        InvalidImage: ``image`` is not ``(H, W, 3)`` ``uint8`` or ``landmarks`` is not ``(5, 2)``.
    """
    value = _check(name, severity)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InvalidImage(f"condition {name!r} needs an (H, W, 3) uint8 RGB image, got shape {shape} {dtype}")
    h, w = image.shape[:2]
    if landmarks is None:
        points = _CENTRED_LANDMARKS * np.array([w, h], dtype=np.float64)
    else:
        points = np.asarray(landmarks, dtype=np.float64)
        if points.shape != (5, 2) or not np.isfinite(points).all():
            raise InvalidImage(f"landmarks must be a finite (5, 2) array, got shape {points.shape}")
    _, _, params, fn = _TABLE[name]
    out = fn(np.ascontiguousarray(image), params(value), rng, _Face(points))
    return np.ascontiguousarray(out, dtype=np.uint8)
