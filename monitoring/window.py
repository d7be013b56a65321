"""A window of the service's request log: per-face features, labelled faces, and what could not be used.

The log is read through :class:`faceops.telemetry.requestlog.RequestLogReader`, the one reader of the file the
service writes: it opens it read-only (the monitor never blocks or changes the service's writes) and refuses a
log of another ``SCHEMA_VERSION``. SQLite does not enforce column types, so every value is checked here: a face
row with a missing or out-of-range feature (text in a number column, a probability above 1, a NaN) is left out
and listed in ``Window.rejected`` with the reason, never allowed to crash the run or skew the statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from faceops.telemetry.reference import FEATURES
from faceops.telemetry.requestlog import FeedbackRow, RequestLogReader
from faceops.telemetry.stats import LabelledFace

__all__ = ["Window", "read_images", "read_window"]

_DECISIONS = {"known", "unknown", "detected", "same", "different"}
# (low, high, may be NULL) of each logged number; the same definitions as the service (faceops.face.quality).
_RANGES: dict[str, tuple[float, float, bool]] = {
    "det_probability": (0.0, 1.0, False),
    "face_size": (0.0, 1e5, False),
    "brightness": (0.0, 255.0, True),
    "blur": (0.0, 1e7, True),
    "top1_similarity": (-1.0001, 1.0001, True),
    "margin": (-1e-6, 2.0001, True),
}
@dataclass
class Window:
    """The usable faces of ``[start, end)`` and their feedback."""

    start: float
    end: float
    faces: pd.DataFrame
    labelled: list[LabelledFace]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    failed_requests: int = 0
    model_versions: dict[str, int] = field(default_factory=dict)
    embeddings: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "requests": self.requests,
            "failed_requests": self.failed_requests,
            "faces": len(self.faces),
            "labelled": len(self.labelled),
            "rejected_rows": len(self.rejected),
            "rejected_examples": self.rejected[:10],
            "model_versions": self.model_versions,
            "embeddings": 0 if self.embeddings is None else len(self.embeddings),
        }


def _number(value: Any, name: str) -> float:
    low, high, nullable = _RANGES[name]
    if value is None:
        if nullable:
            return math.nan
        raise ValueError(f"{name} is missing")
    if isinstance(value, (bytes, str, bool)):
        raise ValueError(f"{name} is not a number ({str(value)[:40]!r})")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ValueError(f"{name} {number!r} is outside [{low:g}, {high:g}]")
    return number


def _embedding(blob: Any) -> np.ndarray | None:
    # the service writes float16 of the model's size (512 for InceptionResnetV1, 128 for MobileFaceNet); logs
    # from before that wrote 512 float32 (2048 bytes, which no float16 embedding of a shipped model has)
    if not isinstance(blob, bytes) or len(blob) % 2 or not 32 <= len(blob) <= 8192:
        return None
    vector = np.frombuffer(blob, dtype=np.float32 if len(blob) == 2048 else np.float16).astype(np.float32)
    return vector if np.all(np.isfinite(vector)) else None


def read_window(path: str | Path, start: float, end: float, model_version: str | None = None) -> Window:
    """Read ``[start, end)`` (unix seconds) of the request log at ``path``, optionally one model version only.

    Raises:
        MonitoringError: the log is missing, not a SQLite file, or lacks the service's tables.
        SchemaVersionMismatch: the log was written with another schema version.
    """
    with RequestLogReader(path) as log:
        logged = log.faces(start, end, model_version)
        feedback = log.feedback(start, end, model_version)
        requests, failed = log.request_counts(start, end, model_version)
        versions = log.model_versions(start, end)
    records, rejected, vectors = [], [], []
    for face in logged:
        try:
            values = {name: _number(getattr(face, name), name) for name in _RANGES}
            if face.decision not in _DECISIONS:
                raise ValueError(f"decision {str(face.decision)[:40]!r} is not one of {sorted(_DECISIONS)}")
        except (TypeError, ValueError) as exc:
            rejected.append({"request_id": str(face.request_id), "face_index": face.face_index, "problem": str(exc)})
            continue
        values["unknown"] = {"unknown": 1.0, "known": 0.0}.get(face.decision, math.nan)
        records.append(
            {
                "request_id": face.request_id,
                "face_index": face.face_index,
                "ts": face.ts,
                "endpoint": face.endpoint,
                "model_version": face.model_version,
                **values,
                "decision": face.decision,
                "predicted": face.predicted,
            }
        )
        vector = _embedding(face.embedding)
        if vector is not None:
            vectors.append(vector)
    faces = pd.DataFrame.from_records(
        records,
        columns=[
            "request_id",
            "face_index",
            "ts",
            "endpoint",
            "model_version",
            *FEATURES,
            "decision",
            "predicted",
        ],
    )
    return Window(
        start=start,
        end=end,
        faces=faces,
        labelled=_labelled(faces, feedback),
        rejected=rejected,
        requests=requests,
        failed_requests=failed,
        model_versions=versions,
        embeddings=np.stack(vectors) if vectors else None,
    )


def _labelled(faces: pd.DataFrame, feedback: list[FeedbackRow]) -> list[LabelledFace]:
    """The latest feedback of each usable face (verify: of face 0, which carries the pair's decision)."""
    truth = {
        (str(fb.request_id), fb.face_index): fb.truth
        for fb in feedback
        if isinstance(fb.truth, str) and isinstance(fb.face_index, int)
    }
    out = []
    for row in faces.itertuples(index=False):
        key = (str(row.request_id), int(row.face_index))
        if key in truth and not (row.endpoint == "verify" and row.face_index != 0):
            out.append(LabelledFace(row.endpoint, row.decision, row.predicted, truth[key]))
    return out


def read_images(path: str | Path, request_ids: list[str]) -> dict[str, bytes]:
    """The stored images (``log_store_images``) of these requests; requests without one are left out."""
    if not request_ids:
        return {}
    with RequestLogReader(path) as log:
        return log.images(request_ids)
