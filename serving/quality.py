"""Per-face quality features logged with every request, for drift monitoring.

They are measured on the aligned crop (the pixels the model sees), so they do not depend on the photo's size:

* ``brightness``: mean luma (ITU-R BT.601) of the crop, 0-255;
* ``blur``: variance of the Laplacian of the grey crop; low means blurry (a common sharpness proxy).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["blur_score", "brightness"]


def brightness(crop: np.ndarray) -> float:
    """Mean luma of an (H, W, 3) RGB ``uint8`` crop."""
    rgb = crop.astype(np.float32)
    return float((0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).mean())


def blur_score(crop: np.ndarray) -> float:
    """Variance of the Laplacian of an RGB ``uint8`` crop (higher is sharper)."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())
