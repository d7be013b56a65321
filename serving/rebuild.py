"""A new model's gallery, built from the stored enrolment photos in batches (see :class:`FaceService`).

:class:`Rebuild` is the progress that ``/ready`` (``rebuild``, ``last_rebuild``) and the metrics
(``faceops_gallery_rebuild_progress``, ``faceops_gallery_rebuild_photos_remaining``) show; :func:`embed_stored`
embeds one batch of stored photos with a model (a photo without a face gives ``None``: stored as such, not tried
again).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from faceops.serving.store import StoredPhoto

from faceops.face.enrol import embed_people
from faceops.face.recognizer import FaceRecognizer

if TYPE_CHECKING:
    from faceops.serving.service import LoadedModel

__all__ = ["Rebuild", "chunks", "embed_stored"]


@dataclass
class Rebuild:
    """A gallery being built for a model from the stored photos (progress for ``/ready`` and the metrics)."""

    model: LoadedModel
    started_at: float = field(default_factory=time.time)
    total: int = 0  # stored photos
    remaining: int = 0  # photos without a result for this model yet
    resumed: int = 0  # photos that already had one when this build started (an earlier, interrupted build)
    embedded: int = 0  # photos embedded by this build
    no_face: int = 0  # of them, photos in which the model found no face
    finished_at: float | None = None

    @property
    def progress(self) -> float:
        return 1.0 if self.total == 0 else round(1.0 - self.remaining / self.total, 4)

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.model.version,
            "model_id": self.model.model_id,
            "progress": self.progress,
            "photos_total": self.total,
            "photos_remaining": self.remaining,
            "photos_resumed": self.resumed,
            "photos_embedded": self.embedded,
            "photos_without_face": self.no_face,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def embed_stored(
    recognizer: FaceRecognizer, photos: list[StoredPhoto], decode: Callable[[bytes, str], np.ndarray]
) -> list[tuple[StoredPhoto, np.ndarray | None]]:
    """Each photo with its subject embedding by ``recognizer``, or ``None`` (no face, or not a usable image)."""
    done = embed_people(
        recognizer,
        [(p.identity, p.data) for p in photos],
        names=[p.source for p in photos],
        load=decode,
        chunk=len(photos),
    )
    vectors: list[np.ndarray | None] = [None] * len(photos)
    for row, index in enumerate(done.indices):
        vectors[index] = done.embeddings[row]
    return list(zip(photos, vectors, strict=True))


def chunks(items: list[StoredPhoto], size: int) -> list[list[StoredPhoto]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
