"""Per-face quality features, measured on the aligned crop (the pixels the model sees) so that they do not
depend on the photo's size. The service logs them with every request and monitoring compares them with the
champion's reference, so both read them from here:

* brightness: mean luma (ITU-R BT.601) of the crop, 0-255;
* blur: variance of the Laplacian of the grey crop; low means blurry (a common sharpness proxy).
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["crop_quality"]


def crop_quality(crop: np.ndarray) -> tuple[float, float]:
    """(brightness, blur) of an aligned (H, W, 3) RGB ``uint8`` crop."""
    rgb = crop.astype(np.float32)
    luma = float((0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).mean())
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    return luma, float(cv2.Laplacian(grey, cv2.CV_64F).var())
