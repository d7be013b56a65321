"""Helpers of the monitoring tests: real photos through the real face recognizer into a real request log.

``replay`` does what the service's /v1/recognize logs (detect, align, embed, identify, quality features), so
the
policy tests judge real figures without an HTTP server; the closed-loop test uses the real service instead.
"""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

# LFW people with >= 10 photos: the gallery knows KNOWN (train split), the reference's impostors are HELD_OUT,
# degraded traffic brings STRANGERS nobody has seen.
KNOWN = ("Alejandro_Toledo", "Hugo_Chavez", "Jean_Chretien", "Serena_Williams")
HELD_OUT = ("Laura_Bush", "Hans_Blix")
STRANGERS = ("Vladimir_Putin", "John_Ashcroft", "Jacques_Chirac", "Gloria_Macapagal_Arroyo")


def degrade(path: Path, darkness: float = 0.35, blur: float = 2.5) -> bytes:
    """A darker, blurred JPEG of a photo (a bad camera, a dim room)."""
    img = Image.open(path).convert("RGB")
    img = ImageEnhance.Brightness(img).enhance(darkness).filter(ImageFilter.GaussianBlur(blur))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def make_data_root(lfw: Path, root: Path, per_person: int = 6) -> Path:
    """A data version: KNOWN people split train/val, HELD_OUT people as test."""
    import hashlib

    from faceops.data.manifest import ManifestRow, write_manifest

    rows = []
    for person in (*KNOWN, *HELD_OUT):
        (root / person).mkdir(parents=True, exist_ok=True)
        for k, src in enumerate(sorted((lfw / person).glob("*.jpg"))[:per_person]):
            dst = root / person / src.name
            shutil.copyfile(src, dst)
            split = "test" if person in HELD_OUT else ("val" if k < 2 else "train")
            rows.append(
                ManifestRow(
                    f"{person}/{src.name}",
                    person,
                    split,
                    hashlib.sha256(dst.read_bytes()).hexdigest(),
                    250,
                    250,
                    "JPEG",
                )
            )
    write_manifest(rows, root / "manifest.csv")
    return root


def replay(
    log,
    recognizer,
    gallery,
    threshold: float,
    photos: list[tuple[bytes, str]],
    ts: float,
    version: str = "1",
    feedback: bool = True,
) -> list[str]:
    """Recognise each (image, truth) like the service and log it with its feedback; returns request ids."""
    from faceops.face.alignment import align_faces
    from faceops.face.gallery import UNKNOWN
    from faceops.face.images import load_image
    from faceops.telemetry.reference import crop_quality
    from faceops.telemetry.requestlog import FaceRecord, RequestRecord

    ids = []
    for k, (data, truth) in enumerate(photos):
        pixels = load_image(data)
        faces = recognizer.detector.detect(pixels)
        records = []
        if faces:
            crops = align_faces(pixels, faces, recognizer.config.align)
            matches = gallery.identify(recognizer.embedder.embed(crops), threshold, 3)
            for i, (face, crop, match) in enumerate(zip(faces, crops, matches, strict=True)):
                bright, blur = crop_quality(crop)
                scores = [s for _, s in match.candidates]
                records.append(
                    FaceRecord(
                        i,
                        face.probability,
                        face.size,
                        bright,
                        blur,
                        match.candidates[0][0],
                        scores[0],
                        scores[0] - scores[1] if len(scores) > 1 else None,
                        "unknown" if match.identity == UNKNOWN else "known",
                        match.identity,
                    )
                )
        request_id = uuid.uuid4().hex
        log.append(
            RequestRecord(
                request_id,
                "recognize",
                200,
                50.0,
                model_version=version,
                threshold=threshold,
                faces=records,
                image=data,
                ts=ts + k * 0.01,
                image_width=pixels.shape[1],
                image_height=pixels.shape[0],
            )
        )
        if feedback and records:
            log.add_feedback(request_id, truth, 0)
        ids.append(request_id)
    return ids


def photos(
    lfw: Path,
    people: tuple[str, ...],
    start: int,
    count: int,
    degraded: bool = False,
    truth: str | None = None,
) -> list[tuple[bytes, str]]:
    out = []
    for person in people:
        for path in sorted((lfw / person).glob("*.jpg"))[start : start + count]:
            out.append((degrade(path) if degraded else path.read_bytes(), truth or person))
    return out


def rng_choice(items: list, n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [items[i] for i in rng.choice(len(items), size=min(n, len(items)), replace=False)]
