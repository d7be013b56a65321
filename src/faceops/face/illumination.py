"""Illumination normalisation of an aligned crop: the last step of the one crop path (:func:`align_face`).

Chosen by ``AlignConfig.illumination`` and stored with the model like every other preprocessing step, so a
model trained or measured on normalised crops is served on normalised crops. Methods:

* ``none``: the crop as aligned (the default; every existing model);
* ``clahe``: contrast-limited adaptive histogram equalisation of the luminance (L of CIE Lab), colour kept;
* ``gamma``: the gamma curve that maps the crop's mean luminance level to :data:`TARGET_MEAN` (a dark crop is
  brightened, a bright one darkened; the curve is monotone, so no detail is lost to clipping; being concave on a
  dark crop, it leaves the new mean below the target when much of the crop is near black);
* ``histeq``: global histogram equalisation of the luma (Y of YCrCb).

``benchmarks/drift_repair.py`` measures them on dark, blurred photos (``benchmarks/results/drift_repair.json``).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from faceops.errors import ConfigError

__all__ = ["ILLUMINATION_METHODS", "TARGET_MEAN", "Illumination", "normalize_illumination"]

Illumination = Literal["none", "clahe", "gamma", "histeq"]
ILLUMINATION_METHODS: tuple[str, ...] = ("none", "clahe", "gamma", "histeq")
TARGET_MEAN = 118.0
"""Luma level (0-255) the ``gamma`` method maps the crop's mean to: about the mean of LFW's aligned crops."""
_GAMMA_RANGE = (0.25, 4.0)  # a near-black or near-white crop is not stretched without bound
_CLAHE_CLIP, _CLAHE_TILES = 2.0, 8


def normalize_illumination(crop: np.ndarray, method: str) -> np.ndarray:
    """The crop with its illumination normalised by ``method``; an (H, W, 3) RGB ``uint8`` crop in and out.

    Raises:
        ConfigError: an unknown method.
    """
    if method == "none":
        return crop
    crop = np.ascontiguousarray(crop, dtype=np.uint8)
    if method == "clahe":
        lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB)
        clahe = cv2.createCLAHE(clipLimit=_CLAHE_CLIP, tileGridSize=(_CLAHE_TILES, _CLAHE_TILES))
        lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
        return np.asarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))
    if method == "gamma":
        mean = float(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).mean())
        mean = min(max(mean, 1.0), 254.0)
        gamma = float(np.clip(np.log(TARGET_MEAN / 255.0) / np.log(mean / 255.0), *_GAMMA_RANGE))
        table = np.clip(255.0 * (np.arange(256) / 255.0) ** gamma + 0.5, 0, 255).astype(np.uint8)
        return np.asarray(cv2.LUT(crop, table))
    if method == "histeq":
        ycc = cv2.cvtColor(crop, cv2.COLOR_RGB2YCrCb)
        ycc[..., 0] = cv2.equalizeHist(np.ascontiguousarray(ycc[..., 0]))
        return np.asarray(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB))
    raise ConfigError(f"unknown illumination method {method!r}; expected one of {', '.join(ILLUMINATION_METHODS)}")
