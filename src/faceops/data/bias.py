"""What can be estimated about who is in a face dataset, and how skewed it is.

A folder-per-identity dataset carries no demographic labels, and FaceOps ships no (and wants no) classifier
that guesses gender, age or ethnicity. What *can* be measured honestly:

* **concentration**: how unevenly images are spread over identities (Gini coefficient, share of the most
  photographed identities, the effective number of identities ``exp(entropy)``). A model trained on a long
  tail learns the head's faces best;
* **skin tone, as an appearance proxy**: the Individual Typology Angle (ITA, Chardon et al. 1991; used for
  face datasets by Merler et al. 2019, "Diversity in Faces") of a cheek patch between the eyes and the mouth,
  ``ITA = atan((L* - 50) / b*)`` in degrees, binned into six categories. It depends on lighting and white
  balance, says nothing about ethnicity, and is only meaningful as a distribution over many images;
* **pose and capture conditions**: yaw proxy, brightness, blur (see :mod:`faceops.data.facts`).
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

__all__ = ["ITA_CATEGORIES", "concentration", "ita_category", "skin_tone_ita", "skin_tone_table"]

# (lower bound, name), from the lightest; the bounds are Chardon et al.'s.
ITA_CATEGORIES = (
    (55.0, "very light"),
    (41.0, "light"),
    (28.0, "intermediate"),
    (10.0, "tan"),
    (-30.0, "brown"),
    (-np.inf, "dark"),
)


def skin_tone_ita(image: np.ndarray, face: object) -> float:
    """ITA in degrees of the cheek patch of ``face`` (a :class:`faceops.face.detection.Face`) in an RGB image."""
    landmarks = np.asarray(face.landmarks, dtype=np.float64)  # type: ignore[attr-defined]
    eyes_y = (landmarks[0, 1] + landmarks[1, 1]) / 2
    mouth_y = (landmarks[3, 1] + landmarks[4, 1]) / 2
    span = max(mouth_y - eyes_y, 1.0)
    x1, x2 = sorted((landmarks[0, 0], landmarks[1, 0]))
    y1, y2 = eyes_y + 0.3 * span, mouth_y - 0.2 * span
    h, w = image.shape[:2]
    x1, x2 = int(np.clip(x1, 0, w - 1)), int(np.clip(x2, 1, w))
    y1, y2 = int(np.clip(y1, 0, h - 1)), int(np.clip(y2, 1, h))
    patch = image[y1 : max(y2, y1 + 1), x1 : max(x2, x1 + 1)]
    if patch.size == 0:
        return float("nan")
    lab = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    lightness = np.median(lab[:, 0]) * 100.0 / 255.0  # OpenCV scales L* to 0..255 and offsets b* by 128
    yellow = np.median(lab[:, 2]) - 128.0
    return float(np.degrees(np.arctan2(lightness - 50.0, yellow)))


def ita_category(ita: float) -> str:
    """The skin-tone category of an ITA value."""
    if np.isnan(ita):
        return "unknown"
    return next(name for bound, name in ITA_CATEGORIES if ita > bound)


def concentration(counts: pd.Series) -> dict[str, float]:
    """How concentrated images are over identities.

    Args:
        counts: images per identity.

    Returns:
        ``identities``, ``images``, ``gini`` (0: all equal, towards 1: a few identities have everything),
        ``effective_identities`` (``exp`` of the entropy of the image share), ``top10_share`` (share of
        images of the 10 most photographed identities), ``top1pct_share``, ``singletons`` (identities with
        one image).
    """
    values = np.sort(counts.to_numpy(dtype=np.float64))
    n, total = len(values), float(values.sum())
    if n == 0 or total == 0:
        return {"identities": 0, "images": 0}
    cumulative = np.cumsum(values)
    gini = float((n + 1 - 2 * (cumulative / total).sum()) / n)
    share = values / total
    top_pct = max(1, int(np.ceil(n / 100)))
    return {
        "identities": n,
        "images": int(total),
        "gini": round(gini, 4),
        "effective_identities": round(float(np.exp(-(share * np.log(share)).sum())), 1),
        "top10_share": round(float(values[-10:].sum() / total), 4),
        "top1pct_share": round(float(values[-top_pct:].sum() / total), 4),
        "singletons": int((values == 1).sum()),
    }


def skin_tone_table(faces: pd.DataFrame) -> pd.DataFrame:
    """Share of each ITA category over images and over identities (by each identity's median ITA).

    Args:
        faces: rows with ``identity`` and ``ita`` columns (images without a face have NaN).
    """
    known = faces.dropna(subset=["ita"])
    if known.empty:
        return pd.DataFrame(columns=["category", "images", "image_share", "identities", "identity_share"])
    by_image = known["ita"].map(ita_category).value_counts()
    by_identity = known.groupby("identity")["ita"].median().map(ita_category).value_counts()
    names = [name for _, name in ITA_CATEGORIES]
    table = pd.DataFrame({"category": names})
    table["images"] = [int(by_image.get(n, 0)) for n in names]
    table["image_share"] = (table["images"] / max(int(table["images"].sum()), 1)).round(3)
    table["identities"] = [int(by_identity.get(n, 0)) for n in names]
    table["identity_share"] = (table["identities"] / max(int(table["identities"].sum()), 1)).round(3)
    return table
