"""The face service: the loaded model and gallery, and the operations the routes call (no HTTP here).

Model and gallery are held together in one immutable :class:`ServingState` that is replaced as a whole (one
reference assignment) when a new champion is loaded. A request takes the state once at its start; its search uses
the newest gallery of the same model. Enrolments and deletions change the gallery in place, never a copy (a
million-face gallery is 0.4 GB): first in the :class:`~faceops.serving.store.GalleryStore` (the system of record:
files with an fsync'ed journal, or PostgreSQL shared by replicas), then in the served gallery, all under the
service's write lock; the gallery's own lock orders them with concurrent searches, and a search that returns after
a deletion was acknowledged never names the deleted identity (:meth:`~faceops.face.gallery.Gallery.identify`).

A new champion with the same model id is swapped in at once. One with another model id (other weights) needs its
own gallery: it is built in the background from the stored enrolment photos, in batches that are saved as they
are done (a restart resumes), while the old model keeps answering; identities enrolled meanwhile are added to
both (their photos are picked up by the next batch), deleted ones leave both. When the new gallery is complete
the service switches. :attr:`FaceService.rebuild` is the progress (``/ready`` and the metrics show it).

With a shared store the service follows the other replicas: :meth:`FaceService.tick` (every ``sync_seconds``)
reads the identities changed elsewhere and reloads them, embedding with the served model any photo that has no
embedding by it yet; a search first checks the store's change counter (one small query) and catches up if
another replica changed something. A store that cannot be reached is :class:`StoreUnavailable` (HTTP 503 naming
the database); the service retries on its own and is back when the database is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from faceops.serving.config import ServingSettings
from faceops.serving.enrolled import check_identity
from faceops.serving.model_source import ModelSource, SourceUnavailable
from faceops.serving.rebuild import Rebuild, chunks, embed_stored
from faceops.serving.state_files import Repair
from faceops.serving.store import DELETED, GalleryStore, IdentityExists, ModelNotReady, StoreUnavailable

from faceops.errors import FaceOpsError, GalleryError, NoFaceDetected, UnknownIdentity
from faceops.evaluation.bundle import ModelBundle
from faceops.face.alignment import align_faces
from faceops.face.detection import Face, select_subject
from faceops.face.enrol import embed_people
from faceops.face.gallery import UNKNOWN, Gallery, Match
from faceops.face.images import load_image
from faceops.face.quality import crop_quality
from faceops.face.recognizer import FaceRecognizer
from faceops.telemetry.erasure import DeletionRecord, likeness_of
from faceops.telemetry.requestlog import RequestLogWriter

__all__ = [
    "AnalyzedFace",
    "FaceService",
    "IdentityExists",
    "LoadedModel",
    "ModelNotReady",
    "Rebuild",
    "ServingState",
    "StoreUnavailable",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    version: str
    bundle: ModelBundle
    recognizer: FaceRecognizer
    loaded_at: float

    @property
    def threshold(self) -> float:
        return self.bundle.threshold

    @property
    def model_id(self) -> str:
        return self.recognizer.model_id


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
    """Wraps a model source, the current model + gallery, and the gallery's store."""

    def __init__(self, settings: ServingSettings, source: ModelSource, store: GalleryStore) -> None:
        self.settings = settings
        self.source = source
        self.store = store
        self._state: ServingState | None = None
        self._write_lock = threading.RLock()
        self.source_error: str | None = None
        self.store_error: str | None = None
        self.last_check: float | None = None
        self.swaps = 0
        self.repairs: list[Repair] = []  # damaged state files moved aside (reported by /ready)
        self.rebuild: Rebuild | None = None  # a gallery being built for a new model (in the background)
        self.last_rebuild: Rebuild | None = None
        self._waiting: LoadedModel | None = None  # loaded, but its gallery could not be read yet (store down)
        self._cursor = 0  # the store's changes applied so far
        self.observe_stage: Callable[[str, float], None] = lambda stage, seconds: None  # set by the app (metrics)

    # -- model life cycle ------------------------------------------------------------------------------------
    @property
    def state(self) -> ServingState:
        state = self._state
        if state is None:
            if self._waiting is not None:
                raise StoreUnavailable(f"model {self._waiting.version} is loaded, but not its gallery: {self.store_error}")
            raise ModelNotReady(f"no model loaded yet from {self.source.description}: {self.source_error}")
        return state

    @property
    def ready(self) -> bool:
        """A model and its gallery are served, and the store answered last time."""
        return self._state is not None and self.store_error is None

    @property
    def version(self) -> str | None:
        return self._state.model.version if self._state else None

    def refresh(self) -> bool:
        """Load the source's current version if it differs from the served one; True if the served model changed.

        A model with the served model's id is swapped in at once; one with another id starts a background
        :class:`Rebuild` (see :meth:`tick`); the first model is served once its gallery is complete. Failures are
        recorded in :attr:`source_error` / :attr:`store_error` and never disturb the model being served.
        """
        self.last_check = time.time()
        try:
            version = self.source.current_version()
            current = self._state
            pending = self.rebuild.model if self.rebuild is not None else self._waiting
            if pending is not None and pending.version == version:
                self.source_error = None
                return False
            if current is not None and current.model.version == version:
                self.source_error = None
                if self.rebuild is not None:  # back to the served model (a rollback during a rebuild)
                    log.info("model %s is champion again: the rebuild for %s stops", version, self.rebuild.model.version)
                    self.rebuild = None
                return False
            model = self._load(version)
        except (SourceUnavailable, FaceOpsError, OSError) as exc:
            self.source_error = f"{type(exc).__name__}: {exc}"
            log.warning("model source problem (serving %s): %s", self.version or "nothing", self.source_error)
            return False
        self.source_error = None
        if current is None:
            self._waiting = model
            return self._build_first()
        if current.gallery.model_id == model.model_id:
            with self._write_lock:
                self._state = replace(self.state, model=model)
                self.swaps += 1
                self.rebuild = None
            self._served(model)
            return True
        log.info("model %s (%s) needs its own gallery: building it in the background", version, model.model_id)
        try:
            with self._write_lock:
                self.rebuild = self._start_rebuild(model)
        except StoreUnavailable as exc:  # the next poll tries again
            self.store_error = str(exc)
        return False

    def _served(self, model: LoadedModel) -> None:
        log.info("serving model version %s (%s), threshold %.4f", model.version, model.model_id, model.threshold)

    def _load(self, version: str) -> LoadedModel:
        bundle = self.source.load(version)
        if self.settings.torch_threads:
            import torch  # the one torch call of the service: a process setting, applied with the model

            # before the detector is built: its ONNX Runtime sessions take their thread count from it
            torch.set_num_threads(self.settings.torch_threads)
        recognizer = bundle.recognizer(device=self.settings.device, detector_backend=self.settings.detector_backend)
        # Warm up (first calls allocate and compile kernels) before the model meets real requests.
        recognizer.detector.detect(np.zeros((160, 160, 3), dtype=np.uint8))
        recognizer.embedder.embed(
            np.zeros((1, bundle.preprocess.align.image_size, bundle.preprocess.align.image_size, 3), dtype=np.uint8)
        )
        return LoadedModel(version, bundle, recognizer, time.time())

    def _start_rebuild(self, model: LoadedModel) -> Rebuild:
        missing, total = self.store.count_missing(model.model_id)
        return Rebuild(model, total=total, remaining=missing, resumed=total - missing)

    def _build_first(self) -> bool:
        """Build the first model's gallery now (serving nothing else meanwhile); True once it is served."""
        try:
            with self._write_lock:
                model = self._waiting
                if model is None:  # built meanwhile by another thread
                    return False
                self._cursor = self.store.head()
                rebuild = self._start_rebuild(model)
                self.rebuild = rebuild
                while self._rebuild_batch(rebuild):
                    pass
                gallery = self.store.gallery(model.model_id)
                self.store.promote(model.model_id)
                self._state = ServingState(model, gallery)
                self._waiting, self.store_error = None, None
                self._finish(rebuild)
        except StoreUnavailable as exc:
            self.rebuild = None
            self.store_error = str(exc)
            log.warning("a model is loaded but its gallery cannot be read: %s", exc)
            return False
        if not rebuild.embedded:  # the stored gallery was complete: nothing was rebuilt
            self.last_rebuild = None
        self._note_damage(gallery, rebuild)
        self._served(model)
        return True

    def _finish(self, rebuild: Rebuild) -> None:
        rebuild.finished_at, rebuild.remaining = time.time(), 0
        self.last_rebuild, self.rebuild = rebuild, None

    def _note_damage(self, gallery: Gallery, rebuild: Rebuild) -> None:
        damage = self.store.take_damage()
        if damage is None:
            return
        path, problem, moved = damage
        if self.settings.keep_enrollment_images:
            action = (
                f"rebuilt from the stored enrolment photos: {len(gallery.identities)} identities, "
                f"{len(gallery)} embeddings, {rebuild.no_face} photo(s) without a face"
            )
        else:
            action = "started an empty gallery (no enrolment photos are kept): re-enrol the identities"
        self.repairs.append(Repair(path, moved, problem, action, time.time()))
        log.warning("gallery %s is damaged (%s): moved to %s; %s", path, problem, moved, action)

    def _rebuild_batch(self, rebuild: Rebuild) -> bool:
        """Embed one batch of photos with no result for the rebuild's model; False when none is left."""
        model_id = rebuild.model.model_id
        with self._write_lock:
            photos = self.store.missing(model_id, self.settings.rebuild_batch)
        if not photos:
            return False
        results = embed_stored(rebuild.model.recognizer, photos, self.decode)  # the slow part: outside the lock
        with self._write_lock:
            self.store.put_embeddings(model_id, results)
        rebuild.embedded += len(results)
        rebuild.no_face += sum(v is None for _, v in results)
        rebuild.remaining = max(0, rebuild.remaining - len(results))
        return True

    def tick(self) -> bool:
        """Background work, called every ``sync_seconds``: retry a gallery the store could not give, advance a
        rebuild by one batch (switching when it is complete), follow other replicas. True if the served model
        changed."""
        try:
            if self._state is None:
                return self._waiting is not None and self._build_first()
            changed = False
            rebuild = self.rebuild
            if rebuild is not None and not self._rebuild_batch(rebuild):
                changed = self._switch(rebuild)
            if self.store.shared:
                self._sync()
            self.store_error = None
            return changed
        except StoreUnavailable as exc:
            self.store_error = str(exc)
            return False

    def busy(self) -> bool:
        """Whether :meth:`tick` has work to do at once (a rebuild in progress, or a gallery still to read)."""
        return self.rebuild is not None or (self._state is None and self._waiting is not None)

    def _switch(self, rebuild: Rebuild) -> bool:
        model = rebuild.model
        with self._write_lock:
            if self.rebuild is None or self.rebuild.model.version != model.version:  # replaced or cancelled
                return False
            while self._rebuild_batch(rebuild):  # photos enrolled since the last batch (few)
                pass
            gallery = self.store.gallery(model.model_id)
            self.store.promote(model.model_id)
            self._state = ServingState(model, gallery)
            self.swaps += 1
            self._finish(rebuild)
        log.info(
            "gallery for %s complete (%d identities, %d embeddings, %d photos embedded, %d resumed): switched",
            model.model_id, len(gallery.identities), len(gallery), rebuild.embedded, rebuild.resumed,
        )  # fmt: skip
        self._served(model)
        return True

    # -- following other replicas ----------------------------------------------------------------------------
    def _sync(self) -> None:
        """Apply the changes other processes made to the shared store since the last call."""
        with self._write_lock:
            cursor, changed = self.store.changes(self._cursor)
            if not changed:
                return
            state = self.state
            model = state.model
            gallery = state.gallery  # changed in place (the gallery's lock orders it with searches)
            if DELETED in changed:  # a deletion elsewhere: the change log does not name whom
                changed.discard(DELETED)
                for gone in set(gallery.identities) - self.store.names():
                    gallery.remove(gone)
            for photos in chunks(self.store.missing(model.model_id, 10_000, changed), self.settings.rebuild_batch):
                self.store.put_embeddings(model.model_id, embed_stored(model.recognizer, photos, self.decode))
            for identity in sorted(changed):
                vectors, sources = self.store.identity(model.model_id, identity)
                _follow(gallery, identity, vectors, sources)
            self._cursor = cursor

    def catch_up(self) -> None:
        """With a shared store: apply other replicas' changes now if there are any (one small query if none)."""
        if self.store.shared and self._state is not None and self.store.head() != self._cursor:
            self._sync()

    # -- inference -------------------------------------------------------------------------------------------
    def decode(self, data: bytes, name: str) -> np.ndarray:
        started = time.perf_counter()
        pixels = load_image(data, name=name, max_pixels=self.settings.max_image_pixels, max_bytes=self.settings.max_body_bytes)
        self.observe_stage("decode", time.perf_counter() - started)
        return pixels

    def analyze(self, pixels: np.ndarray, state: ServingState, recognize: bool, top_k: int | None = None) -> list[AnalyzedFace]:
        """Every face of an image with quality features, and its gallery match when ``recognize`` (``top_k``
        candidates; default: the ``top_k`` setting)."""
        recognizer = state.model.recognizer
        started = time.perf_counter()
        faces = recognizer.detector.detect(pixels)
        detected = time.perf_counter()
        self.observe_stage("detect", detected - started)
        if not faces:
            return []
        crops = align_faces(pixels, faces, recognizer.config.align)
        embeddings = recognizer.embedder.embed(crops)
        embedded = time.perf_counter()
        self.observe_stage("embed", embedded - detected)
        matches: list[Match | None] = [None] * len(faces)
        if recognize:
            matches = list(self.identify(embeddings, state, top_k))
            self.observe_stage("search", time.perf_counter() - embedded)
        quality = [crop_quality(c) for c in crops]  # (brightness, blur)
        return [AnalyzedFace(f, e, q[0], q[1], m) for f, e, q, m in zip(faces, embeddings, quality, matches, strict=True)]

    def identify(self, embeddings: np.ndarray, state: ServingState, top_k: int | None = None) -> list[Match]:
        """Search the newest gallery of the request's model (not the one of the request's start: a deletion
        acknowledged meanwhile, here or on another replica, is never answered)."""
        self.catch_up()
        fresh = self._state
        gallery = fresh.gallery if fresh is not None and fresh.gallery.model_id == state.gallery.model_id else state.gallery
        if len(gallery) == 0:
            return [Match(UNKNOWN, float("nan"), ()) for _ in range(len(embeddings))]
        return gallery.identify(embeddings, state.model.threshold, top_k or self.settings.top_k)

    def subject(self, pixels: np.ndarray, state: ServingState, name: str) -> AnalyzedFace:
        """The subject face of a photo (the model's subject policy); raises :class:`NoFaceDetected`."""
        faces = self.analyze(pixels, state, recognize=False)
        face = select_subject([f.face for f in faces], pixels.shape, state.model.bundle.preprocess.detector.subject)
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
        self.catch_up()
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
            # The store decides (under its own lock or transaction): another enrolment or a deletion, here or on
            # another replica, may have landed while this one embedded.
            sources = self.store.enroll(
                identity,
                new=new,
                model_id=current.model.model_id,
                photos=[images[i][1] for i in done.indices],
                embeddings=done.embeddings,
                keep=self.settings.keep_enrollment_images,
            )
            if self.store.shared:
                self._sync()  # reads this enrolment back, with whatever other replicas did meanwhile
            elif not self.store.live_gallery:  # a live store's gallery is the served one: changed already
                done.add_to(current.gallery, sources)  # in place
        return identity, len(done.indices), errors

    def delete(self, identity: str, request_log: RequestLogWriter, actor: str) -> dict[str, int]:
        """Erase an identity from every store the service writes; how many of what each lost.

        In this order, so that a failure part-way leaves the identity deletable again (a retry finds it): check it
        exists (:class:`UnknownIdentity`, nothing touched), erase it from the request log (every request naming
        it or, with logged embeddings, showing it: :mod:`faceops.telemetry.erasure`), delete its embeddings of
        every model and its photos from the store and the served gallery, then append the audit record (who,
        when, the counts; the name only as a salted hash) to the request log's ``deletions`` table.

        Returns:
            ``{'gallery_embeddings', 'photos', 'log_requests', 'log_faces', 'log_feedback', 'log_images',
            'log_embeddings'}``.
        """
        with self._write_lock:
            self.catch_up()
            current = self.state
            if identity not in current.gallery and not self.store.has(identity):
                raise UnknownIdentity(f"identity {identity!r} is not enrolled")
            likeness = likeness_of(current.gallery, identity, current.model.threshold)
            logged = request_log.forget(identity, likeness)
            stored = self.store.delete(identity)
            if self.store.shared:
                self._sync()
            elif identity in current.gallery:  # in place (a live store removed it already)
                current.gallery.remove(identity)
            removed = {"gallery_embeddings": stored["embeddings"], "photos": stored["photos"]}
            removed |= {f"log_{k}": n for k, n in logged.items()}
            request_log.record_deletion(DeletionRecord.new(identity, actor, removed))
        log.info("identity erased by %s: %s", actor, removed)  # counts only: the log names no one
        return removed


def _follow(gallery: Gallery, identity: str, vectors: np.ndarray, sources: list[str]) -> None:
    """Make ``identity`` in ``gallery`` what the store holds, in place: new photos of an enrolled identity are
    added to it (it is never missing from a search meanwhile); otherwise it is replaced or removed."""
    if identity in gallery:
        held = set(gallery.sources_of(identity))
        if len(set(sources)) == len(sources) and held <= set(sources):  # unique names: the new ones are known
            fresh = [i for i, source in enumerate(sources) if source not in held]
            if fresh:
                gallery.add(identity, vectors[fresh], [sources[i] for i in fresh])
            return
        gallery.remove(identity)
    if len(sources):
        gallery.add(identity, vectors, sources)


def _check_enrolled(gallery: Gallery, identity: str, new: bool) -> None:
    exists = identity in gallery
    if new and exists:
        raise IdentityExists(f"identity {identity!r} is already enrolled: add images to it instead")
    if not new and not exists:
        raise UnknownIdentity(f"identity {identity!r} is not enrolled")
