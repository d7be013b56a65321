"""The face service: the loaded model and gallery, and the operations the routes call (no HTTP here).

Model and gallery are held together in one immutable :class:`ServingState` that is replaced as a whole (one
reference assignment) when a new champion is loaded or the gallery changes. A request takes the state once at
its start and uses it to the end, so a swap never fails or mixes an in-flight request; mutations copy the
gallery, change the copy, save it atomically and then publish it. A gallery file that cannot be read at start
is moved aside and rebuilt from the stored enrolment photos (:mod:`faceops.serving.state_files`), never a crash.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace

import numpy as np
from faceops.serving.config import ServingSettings
from faceops.serving.enrolled import EnrolledPhotos, check_identity, copied, rebuild_gallery
from faceops.serving.model_source import ModelSource, SourceUnavailable
from faceops.serving.state_files import Repair, move_aside, state_lock

from faceops.errors import FaceOpsError, GalleryError, NoFaceDetected, UnknownIdentity
from faceops.evaluation.bundle import ModelBundle
from faceops.face.alignment import align_faces
from faceops.face.detection import Face, select_subject
from faceops.face.enrol import embed_people
from faceops.face.gallery import UNKNOWN, Gallery, Match
from faceops.face.images import load_image
from faceops.face.quality import crop_quality
from faceops.face.recognizer import FaceRecognizer

__all__ = ["AnalyzedFace", "LoadedModel", "ModelNotReady", "FaceService", "ServingState"]

log = logging.getLogger(__name__)


class ModelNotReady(FaceOpsError):
    """No model is loaded yet (the source was unreachable at start)."""


@dataclass(frozen=True)
class LoadedModel:
    version: str
    bundle: ModelBundle
    recognizer: FaceRecognizer
    loaded_at: float

    @property
    def threshold(self) -> float:
        return self.bundle.threshold


@dataclass(frozen=True)
class ServingState:
    model: LoadedModel
    gallery: Gallery


@dataclass(frozen=True)
class AnalyzedFace:
    """One face of a request with what monitoring needs."""

    face: Face
    embedding: np.ndarray
    brightness: float
    blur: float
    match: Match | None = None

    @property
    def margin(self) -> float | None:
        if self.match is None or len(self.match.candidates) < 2:
            return None
        return self.match.candidates[0][1] - self.match.candidates[1][1]


class FaceService:
    """Wraps a model source, the current model + gallery, and the enrollment photo store."""

    def __init__(self, settings: ServingSettings, source: ModelSource) -> None:
        self.settings = settings
        self.source = source
        self.photos = EnrolledPhotos(settings.enrolled_dir)
        self._state: ServingState | None = None
        self._write_lock = threading.RLock()
        self.source_error: str | None = None
        self.last_check: float | None = None
        self.swaps = 0
        self.repairs: list[Repair] = []  # damaged state files moved aside (reported by /ready)

    # -- model life cycle ------------------------------------------------------------------------------------
    @property
    def state(self) -> ServingState:
        state = self._state
        if state is None:
            raise ModelNotReady(f"no model loaded yet from {self.source.description}: {self.source_error}")
        return state

    @property
    def ready(self) -> bool:
        return self._state is not None

    def refresh(self) -> bool:
        """Load the source's current version if it differs from the served one; True if the model changed.

        Failures are recorded in :attr:`source_error` and never disturb the model being served.
        """
        self.last_check = time.time()
        try:
            version = self.source.current_version()
            current = self._state
            if current is not None and current.model.version == version:
                self.source_error = None
                return False
            model = self._load(version)
        except (SourceUnavailable, FaceOpsError, OSError) as exc:
            self.source_error = f"{type(exc).__name__}: {exc}"
            log.warning("model source problem (serving %s): %s", self.version or "nothing", self.source_error)
            return False
        with self._write_lock:
            gallery = self._gallery_for(model)
            self._state = ServingState(model, gallery)
            self.source_error = None
            self.swaps += current is not None
        log.info(
            "serving model version %s (%s), threshold %.4f", version, model.bundle.model_id, model.threshold
        )
        return True

    @property
    def version(self) -> str | None:
        return self._state.model.version if self._state else None

    def _load(self, version: str) -> LoadedModel:
        bundle = self.source.load(version)
        recognizer = bundle.recognizer(device=self.settings.device)
        if self.settings.torch_threads:
            import torch  # the one torch call of the service: a process setting, applied with the model

            torch.set_num_threads(self.settings.torch_threads)
        # Warm up (first calls allocate and compile kernels) before the model meets real requests.
        recognizer.detector.detect(np.zeros((160, 160, 3), dtype=np.uint8))
        recognizer.embedder.embed(
            np.zeros(
                (1, bundle.preprocess.align.image_size, bundle.preprocess.align.image_size, 3), dtype=np.uint8
            )
        )
        return LoadedModel(version, bundle, recognizer, time.time())

    def _gallery_for(self, model: LoadedModel) -> Gallery:
        model_id = model.recognizer.model_id
        current = self._state
        if current is not None and current.gallery.model_id == model_id:
            return current.gallery
        path = self.settings.gallery_path
        with state_lock(path.parent):
            damaged = None
            if path.exists():
                try:
                    gallery = Gallery.load(path)
                except GalleryError as exc:  # damaged: kept aside, rebuilt below; never a crash loop
                    damaged = (str(exc), move_aside(path))
                else:
                    if gallery.model_id == model_id:
                        return gallery
            if not self.settings.keep_enrollment_images:
                if path.exists():
                    log.warning(
                        "gallery %s was made by another model and no photos are kept: starting empty", path
                    )
                gallery = Gallery(model_id)
                action = "started an empty gallery (no enrolment photos are kept): re-enrol the identities"
            else:
                gallery, lost = rebuild_gallery(self.photos, model.recognizer)
                if lost:
                    log.warning("%d enrollment photo(s) gave no face with the new model", lost)
                action = (
                    f"rebuilt from the stored enrolment photos: {len(gallery.identities)} identities, "
                    f"{len(gallery)} embeddings, {lost} photo(s) without a face"
                )
                gallery.save(path)
        if damaged is not None:
            problem, moved = damaged
            self.repairs.append(Repair(str(path), str(moved) if moved else None, problem, action, time.time()))
            log.warning("gallery %s is damaged (%s): moved to %s; %s", path, problem, moved, action)
        return gallery

    # -- inference -------------------------------------------------------------------------------------------
    def decode(self, data: bytes, name: str) -> np.ndarray:
        return load_image(
            data, name=name, max_pixels=self.settings.max_image_pixels, max_bytes=self.settings.max_body_bytes
        )

    def analyze(
        self, pixels: np.ndarray, state: ServingState, recognize: bool, top_k: int | None = None
    ) -> list[AnalyzedFace]:
        """Every face of an image with quality features, and its gallery match when ``recognize`` (``top_k``
        candidates; default: the ``top_k`` setting)."""
        recognizer = state.model.recognizer
        faces = recognizer.detector.detect(pixels)
        if not faces:
            return []
        crops = align_faces(pixels, faces, recognizer.config.align)
        embeddings = recognizer.embedder.embed(crops)
        matches: list[Match | None] = [None] * len(faces)
        if recognize:
            matches = list(self.identify(embeddings, state, top_k))
        return [
            AnalyzedFace(f, e, *crop_quality(c), m)
            for f, e, c, m in zip(faces, embeddings, crops, matches, strict=True)
        ]

    def identify(self, embeddings: np.ndarray, state: ServingState, top_k: int | None = None) -> list[Match]:
        if len(state.gallery) == 0:
            return [Match(UNKNOWN, float("nan"), ()) for _ in range(len(embeddings))]
        return state.gallery.identify(embeddings, state.model.threshold, top_k or self.settings.top_k)

    def subject(self, pixels: np.ndarray, state: ServingState, name: str) -> AnalyzedFace:
        """The subject face of a photo (the model's subject policy); raises :class:`NoFaceDetected`."""
        faces = self.analyze(pixels, state, recognize=False)
        face = select_subject(
            [f.face for f in faces], pixels.shape, state.model.bundle.preprocess.detector.subject
        )
        if face is None:
            raise NoFaceDetected(name)
        return next(f for f in faces if f.face is face)

    # -- gallery ---------------------------------------------------------------------------------------------
    def enroll(self, identity: str, images: list[tuple[str, bytes]], *, new: bool) -> tuple[str, int, dict]:
        """Add photos of an identity; ``new`` refuses an existing identity, otherwise it must exist.

        Returns the identity, the number of photos added, and ``{photo name: error}`` for photos not used.
        Raises :class:`NoFaceDetected` / :class:`InvalidImage` when no photo could be used.
        """
        identity = check_identity(identity)
        state = self.state
        _check_enrolled(state.gallery, identity, new)  # early, before the slow embedding
        done = embed_people(
            state.model.recognizer,
            [(identity, data) for _, data in images],
            names=[name for name, _ in images],
            load=self.decode,  # the service's size limits
            chunk=1,  # one decoded upload in memory at a time
        )
        errors: dict[str, Exception] = {r.name: r.error for r in done.rejected}  # in upload order
        if not done.indices:
            raise next(iter(errors.values())) if errors else GalleryError("no images given")
        with self._write_lock:
            current = self.state
            if current.model.version != state.model.version:
                raise ModelNotReady("the model changed during enrollment: please retry")
            # Again under the lock: another enrolment (or a deletion) may have landed while this one embedded.
            _check_enrolled(current.gallery, identity, new)
            gallery = copied(current.gallery)
            kept = [images[i][1] for i in done.indices]
            sources = [
                self.photos.save(identity, d) if self.settings.keep_enrollment_images else "" for d in kept
            ]
            done.add_to(gallery, sources)
            gallery.save(self.settings.gallery_path)
            self._state = replace(current, gallery=gallery)
        return identity, len(done.indices), errors

    def delete(self, identity: str) -> int:
        """Remove every embedding (and stored photo) of an identity; returns how many embeddings."""
        with self._write_lock:
            current = self.state
            gallery = copied(current.gallery)
            removed = gallery.remove(identity)
            gallery.save(self.settings.gallery_path)
            self.photos.remove(identity)
            self._state = replace(current, gallery=gallery)
        return removed


class IdentityExists(GalleryError):
    """Enrolling an identity that is already enrolled."""


def _check_enrolled(gallery: Gallery, identity: str, new: bool) -> None:
    exists = identity in gallery.identities
    if new and exists:
        raise IdentityExists(f"identity {identity!r} is already enrolled: add images to it instead")
    if not new and not exists:
        raise UnknownIdentity(f"identity {identity!r} is not enrolled")
