"""FaceOps: face detection, alignment, embeddings, verification and identification.

The public API is re-exported here lazily (importing ``faceops`` does not import torch)::

    from faceops import FaceRecognizer, Gallery
    recognizer = FaceRecognizer()
    face = recognizer.embed_subject("photo.jpg")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AlignConfig": "faceops.face.config",
    "DetectorConfig": "faceops.face.config",
    "EmbedderConfig": "faceops.face.config",
    "PreprocessConfig": "faceops.face.config",
    "Embedder": "faceops.face.embedding",
    "Face": "faceops.face.detection",
    "FaceDetector": "faceops.face.detection",
    "FaceRecognizer": "faceops.face.recognizer",
    "Gallery": "faceops.face.gallery",
    "Match": "faceops.face.gallery",
    "ModelBundle": "faceops.evaluation.bundle",
    "Settings": "faceops.settings",
    "get_settings": "faceops.settings",
    "load_image": "faceops.face.images",
    "verification_report": "faceops.evaluation.metrics",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'faceops' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
