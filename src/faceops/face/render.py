"""Annotated images: boxes, landmarks, probabilities and names drawn on a photo."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from faceops.face.detection import Face

__all__ = ["draw_faces", "save_annotated"]

_KNOWN, _UNKNOWN = (40, 200, 80), (230, 60, 60)


def draw_faces(
    image: np.ndarray,
    faces: Sequence[Face],
    labels: Sequence[str | None] | None = None,
    known: Sequence[bool] | None = None,
) -> Image.Image:
    """A copy of ``image`` with each face's box, 5 landmarks and a caption (its label, else its probability).

    Unknown faces are drawn in red, others in green: ``known`` says which are known; without it, a face is
    unknown when its label is ``unknown`` or ends with `` unknown`` (e.g. ``#3 unknown``).
    """
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    scale = max(1, round(max(canvas.size) / 500))
    font = ImageFont.load_default(size=12 * scale)
    labels = list(labels) if labels is not None else [None] * len(faces)
    if known is None:
        known = [not (label == "unknown" or (label or "").endswith(" unknown")) for label in labels]
    for face, label, is_known in zip(faces, labels, known, strict=True):
        colour = _KNOWN if is_known else _UNKNOWN
        draw.rectangle(face.box, outline=colour, width=2 * scale)
        for x, y in face.landmarks:
            r = 2 * scale
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 210, 0))
        caption = label if label is not None else f"p={face.probability:.3f}"
        x1, y1 = face.box[0], face.box[1]
        text_box = draw.textbbox((x1, y1), caption, font=font)
        height = text_box[3] - text_box[1] + 4 * scale
        top = y1 - height if y1 - height >= 0 else face.box[3]
        draw.rectangle((x1, top, x1 + text_box[2] - text_box[0] + 4 * scale, top + height), fill=colour)
        draw.text((x1 + 2 * scale, top + scale), caption, fill=(255, 255, 255), font=font)
    return canvas


def save_annotated(
    path: str | Path, image: np.ndarray, faces: Sequence[Face], labels: Sequence[str | None] | None = None
) -> Path:
    """Draw and save as JPEG (PNG if the path says so); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_faces(image, faces, labels).save(path, quality=90)
    return path
