"""The one face path: image -> detect -> choose / align -> normalise -> embed.

Training, evaluation, the CLI and serving all go through :class:`FaceRecognizer`, built from one
:class:`~faceops.face.config.PreprocessConfig` (stored with every model), so the pixels a model sees never differ
between the place it was measured and the place it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceops.errors import InvalidImage, NoFaceDetected
from faceops.face.alignment import align_face, align_faces
from faceops.face.config import PreprocessConfig
from faceops.face.detection import Detector, Face, build_detector, select_subject
from faceops.face.embedding import Embedder
from faceops.face.images import ImageSource, load_image

__all__ = ["BatchResult", "FaceEmbedding", "FaceRecognizer"]

Progress = Callable[[int], None]


@dataclass(frozen=True)
class FaceEmbedding:
    """A face and its embedding."""

    face: Face
    embedding: np.ndarray = field(repr=False)


@dataclass
class BatchResult:
    """Subject embeddings of many images; rows of images that failed are zero and listed in ``errors``.

    Attributes:
        embeddings: (N, D) float32, one row per input in order (D: the model's embedding size).
        faces: the subject face of each input, or ``None``.
        errors: input index -> the error (``InvalidImage`` or ``NoFaceDetected``).
    """

    embeddings: np.ndarray
    faces: list[Face | None]
    errors: dict[int, Exception]

    @property
    def ok(self) -> np.ndarray:
        mask = np.ones(len(self.faces), dtype=bool)
        mask[list(self.errors)] = False
        return mask


class FaceRecognizer:
    """Detection, alignment and embedding driven by one preprocessing config.

    Args:
        config: the preprocessing config (detection, alignment, normalisation).
        embedder: a ready embedder; by default one is built from the settings' weights.
        detector: a ready detector; by default the one ``config.detector`` names (:func:`build_detector`).
        detector_weights: the trained detector's weights file, when ``config.detector`` names it.
    """

    def __init__(
        self,
        config: PreprocessConfig | None = None,
        embedder: Embedder | None = None,
        detector: Detector | None = None,
        detector_weights: str | Path | None = None,
    ) -> None:
        self.config = config or PreprocessConfig()
        self.detector: Detector = detector or build_detector(self.config.detector, detector_weights)
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        """Built on first use, so detection-only work never loads the embedding weights."""
        if self._embedder is None:
            self._embedder = Embedder(self.config.embedder)
        return self._embedder

    @property
    def model_id(self) -> str:
        return f"{self.embedder.model_id}|pre:{self.config.fingerprint()}"

    def detect(self, image: ImageSource) -> list[Face]:
        """Every face in one image."""
        return self.detector.detect(load_image(image))

    def analyze(self, image: ImageSource) -> tuple[np.ndarray, list[FaceEmbedding]]:
        """Every face of one image with its embedding; returns the decoded image too."""
        pixels = load_image(image)
        faces = self.detector.detect(pixels)
        if not faces:
            return pixels, []
        vectors = self.embedder.embed(align_faces(pixels, faces, self.config.align))
        return pixels, [FaceEmbedding(f, v) for f, v in zip(faces, vectors, strict=True)]

    def embed_subject(self, image: ImageSource, name: str | None = None) -> FaceEmbedding:
        """The subject face of a photo (by the config's policy) and its embedding."""
        pixels = load_image(image, name=name)
        face = select_subject(self.detector.detect(pixels), pixels.shape, self.config.detector.subject)
        if face is None:
            raise NoFaceDetected(name or (str(image) if isinstance(image, (str, Path)) else None))
        return FaceEmbedding(face, self.embedder.embed(align_face(pixels, face, self.config.align))[0])

    def subject_crops(
        self, sources: Sequence[ImageSource], chunk: int = 64, progress: Progress | None = None
    ) -> tuple[np.ndarray, list[Face | None], dict[int, Exception]]:
        """Aligned subject crops of many images, detected in batches; failures are reported, not raised."""
        size = self.config.align.image_size
        crops = np.zeros((len(sources), size, size, 3), dtype=np.uint8)
        faces: list[Face | None] = [None] * len(sources)
        errors: dict[int, Exception] = {}
        for start in range(0, len(sources), chunk):
            indices, images = [], []
            for i in range(start, min(start + chunk, len(sources))):
                try:
                    images.append(load_image(sources[i]))
                    indices.append(i)
                except InvalidImage as exc:
                    errors[i] = exc
            detections = self.detector.detect_batch(images) if images else []
            for i, pixels, found in zip(indices, images, detections, strict=True):
                face = select_subject(found, pixels.shape, self.config.detector.subject)
                if face is None:
                    errors[i] = NoFaceDetected(str(sources[i]) if isinstance(sources[i], (str, Path)) else None)
                    continue
                faces[i] = face
                crops[i] = align_face(pixels, face, self.config.align)
            if progress:
                progress(min(chunk, len(sources) - start))
        return crops, faces, errors

    def embed_subjects(
        self, sources: Sequence[ImageSource], chunk: int = 64, progress: Progress | None = None
    ) -> BatchResult:
        """Subject embeddings of many images (batched detection and embedding)."""
        crops, faces, errors = self.subject_crops(sources, chunk, progress)
        embeddings = np.zeros((len(sources), self.embedder.dim), dtype=np.float32)
        ok = [i for i in range(len(sources)) if i not in errors]
        if ok:
            embeddings[ok] = self.embedder.embed(crops[ok])
        return BatchResult(embeddings, faces, errors)
