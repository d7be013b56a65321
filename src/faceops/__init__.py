"""FaceOps: face detection, alignment, embeddings, verification and identification.

The public API is re-exported here lazily (importing ``faceops`` does not import torch)::

    from faceops import FacePipeline, Gallery
    pipeline = FacePipeline()
    face = pipeline.embed_subject("photo.jpg")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AlignConfig": "faceops.config",
    "DetectorConfig": "faceops.config",
    "EmbedderConfig": "faceops.config",
    "PreprocessConfig": "faceops.config",
    "Embedder": "faceops.embedding",
    "Face": "faceops.detection",
    "FaceDetector": "faceops.detection",
    "FacePipeline": "faceops.pipeline",
    "Gallery": "faceops.gallery",
    "Match": "faceops.gallery",
    "ModelBundle": "faceops.model",
    "Settings": "faceops.settings",
    "get_settings": "faceops.settings",
    "load_image": "faceops.images",
    "verification_report": "faceops.metrics",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'faceops' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
