"""Per-image facts of a data version, shared by validation and the EDA report.

:func:`image_facts` reads every image of the manifest once: is it readable, its real format and size, does its
sha256 still match the manifest, and its brightness (mean grey level), contrast (grey standard deviation) and
sharpness (variance of the Laplacian: low values mean blur).

:func:`face_facts` runs the face detector on a deterministic sample (detection is the slow part) and adds, per
image: a face found, its probability, its size in pixels and relative to the image, a yaw proxy (horizontal
offset of the nose from the eyes' midpoint, in inter-ocular distances: 0 is frontal, about +-0.5 is a strong
profile), a roll angle (eye line) and the skin-tone proxy of :mod:`faceops.data.bias`. Precomputed statistics
(issue 4's ``<cache>/stats.csv``: ``path, face_found, probability, face_size[, brightness, blur, yaw]``) are
read by
:func:`read_stats` and replace detection when given.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from faceops.data.manifest import ManifestRow
from faceops.errors import DataValidationFailed, InvalidImage
from faceops.face.images import load_image

__all__ = ["FACE_COLUMNS", "face_facts", "image_facts", "read_stats", "sample_paths"]

FACE_COLUMNS = ("face_found", "probability", "face_size", "face_rel_size", "yaw", "roll", "ita")


def _quality(image: np.ndarray) -> tuple[float, float, float]:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return float(grey.mean()), float(grey.std()), float(cv2.Laplacian(grey, cv2.CV_64F).var())


def image_facts(
    root: str | Path, rows: Sequence[ManifestRow], progress: Callable[[int], object] | None = None
) -> pd.DataFrame:
    """One row per manifest row with the facts read from the file (see the module docstring)."""
    root = Path(root)
    records = []
    for row in rows:
        record: dict[str, object] = {
            "path": row.path,
            "identity": row.identity,
            "split": row.split,
            "manifest_sha256": row.sha256,
            "readable": False,
            "error": "",
            "format": None,
            "width": None,
            "height": None,
            "sha256": None,
            "brightness": None,
            "contrast": None,
            "blur": None,
        }
        file = root / row.path
        try:
            data = file.read_bytes() if file.is_file() else None
            if data is None:
                raise InvalidImage("file is missing", row.path)
            record["sha256"] = hashlib.sha256(data).hexdigest()
            image = load_image(data, name=row.path)
            with Image.open(io.BytesIO(data)) as probe:
                record["format"] = probe.format
            record.update(readable=True, width=image.shape[1], height=image.shape[0])
            record["brightness"], record["contrast"], record["blur"] = _quality(image)
        except InvalidImage as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        except OSError as exc:
            record["error"] = f"OSError: {exc}"
        records.append(record)
        if progress:
            progress(1)
    frame = pd.DataFrame.from_records(records)
    frame["sha256_ok"] = frame["sha256"] == frame["manifest_sha256"]
    return frame


def sample_paths(paths: Sequence[str], size: int | None, seed: int = 0) -> list[str]:
    """A deterministic sample of ``size`` paths (all of them when ``size`` is None or larger)."""
    if size is None or size >= len(paths):
        return sorted(paths)
    key = lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest()  # noqa: E731
    return sorted(sorted(paths, key=key)[:size])


def _pose(landmarks: np.ndarray) -> tuple[float, float]:
    left_eye, right_eye, nose = landmarks[0], landmarks[1], landmarks[2]
    eye_vec = right_eye - left_eye
    distance = float(np.hypot(*eye_vec)) or 1.0
    midpoint = (left_eye + right_eye) / 2
    # Offset of the nose from the eye midpoint along the eye line, in inter-ocular distances.
    yaw = float(np.dot(nose - midpoint, eye_vec) / distance**2)
    roll = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    return yaw, roll


def face_facts(
    root: str | Path,
    paths: Sequence[str],
    detector: object | None = None,
    batch_size: int = 8,
    progress: Callable[[int], object] | None = None,
) -> pd.DataFrame:
    """Detect the subject face in each image of ``paths`` (relative to ``root``).

    Args:
        root: the data folder.
        paths: the images to look at (use :func:`sample_paths` to keep this fast).
        detector: a :class:`faceops.face.detection.FaceDetector` (default: one with the default config).
        batch_size: images per MTCNN batch.
        progress: called with the number of images done after each batch.
    """
    from faceops.data.bias import skin_tone_ita
    from faceops.face.detection import FaceDetector, select_subject

    detector = detector or FaceDetector()
    root = Path(root)
    records = []
    for start in range(0, len(paths), batch_size):
        chunk = list(paths[start : start + batch_size])
        images = {}
        for path in chunk:
            try:
                images[path] = load_image(root / path)
            except InvalidImage:
                records.append({"path": path, "face_found": np.nan})
        found = detector.detect_batch(list(images.values()))  # type: ignore[attr-defined]
        for (path, image), faces in zip(images.items(), found, strict=True):
            face = select_subject(faces, image.shape, detector.config.subject)  # type: ignore[attr-defined]
            if face is None:
                records.append({"path": path, "face_found": 0.0})
                continue
            yaw, roll = _pose(np.asarray(face.landmarks))
            records.append(
                {
                    "path": path,
                    "face_found": 1.0,
                    "probability": face.probability,
                    "face_size": face.size,
                    "face_rel_size": face.size / min(image.shape[:2]),
                    "yaw": yaw,
                    "roll": roll,
                    "ita": skin_tone_ita(image, face),
                }
            )
        if progress:
            progress(len(chunk))
    return pd.DataFrame.from_records(records, columns=["path", *FACE_COLUMNS])


def read_stats(path: str | Path, data_root: str | Path | None = None) -> pd.DataFrame:
    """Read precomputed per-image statistics (CSV or JSON records) with at least ``path`` and ``face_found``.

    Paths are made relative to ``data_root`` when they are absolute or start with it, so they match the
    manifest.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationFailed(f"{path}: no statistics file")
    try:
        stats = pd.read_json(path) if path.suffix == ".json" else pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise DataValidationFailed(f"{path}: cannot read statistics ({exc})") from exc
    missing = {"path", "face_found"} - set(stats.columns)
    if missing:
        raise DataValidationFailed(f"{path}: statistics lack columns {sorted(missing)}")
    if data_root is not None:
        prefixes = [str(Path(data_root).resolve()) + "/", str(data_root).rstrip("/") + "/"]
        stats["path"] = [
            next((p[len(x) :] for x in prefixes if p.startswith(x)), p) for p in stats["path"].astype(str)
        ]
    stats["face_found"] = stats["face_found"].map(
        lambda v: np.nan if pd.isna(v) else float(str(v).strip().lower() in ("1", "1.0", "true", "yes"))
    )
    return stats
