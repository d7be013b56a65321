"""The gallery's system of record behind one interface: embedded files (one process) or PostgreSQL (replicas).

A store keeps the identities, their enrolment photos (or only the photos' names when photos are not kept), and
per model id the embedding of each photo, or the fact that the model found no face in it. The service keeps an
in-memory :class:`~faceops.face.gallery.Gallery` per model for searching, built from the store and updated with
each change; the store is what survives a restart and what replicas share.

* :class:`EmbeddedStore` is today's layout in ``state_dir``: ``gallery.npz`` (the served model's gallery) with
  its journal ``gallery.npz.journal`` (the enrolments and deletions since the file was written: each change is
  appended and fsync'ed, then made in place; the file is rewritten only when the journal grows large or at start
  when it is not small), ``enrolled/<identity>/<sha256>`` (the photos) and, while a new model's gallery is built,
  ``gallery-rebuild.npz`` (its part done so far, with its journal, so a restart resumes it). The gallery it
  gives the service is its own, changed in place (:attr:`GalleryStore.live_gallery`): a million-face gallery is
  never copied for a change.
* :class:`~faceops.serving.store_postgres.PostgresStore` keeps the same in tables, with a change counter that
  replicas follow (see there).
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faceops.serving.enrolled import EnrolledPhotos
from faceops.serving.state_files import move_aside, state_lock

from faceops.errors import FaceOpsError, GalleryError, UnknownIdentity
from faceops.face.gallery import Gallery
from faceops.face.gallery_file import journal_path

__all__ = [
    "EmbeddedStore",
    "GalleryStore",
    "IdentityExists",
    "ModelNotReady",
    "StoreUnavailable",
    "StoredPhoto",
    "DELETED",
]

log = logging.getLogger(__name__)

# What a shared store's change log says for a deletion: not the name (the log would keep naming the person); a
# replica that reads it drops the identities its gallery has and the store no longer has (:meth:`GalleryStore.names`).
DELETED = ""


class ModelNotReady(FaceOpsError):
    """The service cannot answer yet: no model loaded (the source was unreachable at start), or no gallery."""


class StoreUnavailable(ModelNotReady):
    """The gallery's store (the database) cannot be reached: HTTP 503, naming it; the service retries by itself."""


class IdentityExists(GalleryError):
    """Enrolling an identity that is already enrolled."""


@dataclass(frozen=True)
class StoredPhoto:
    """An enrolment photo as stored: its name (the gallery source), whose it is, and its bytes."""

    source: str
    identity: str
    data: bytes


class GalleryStore(abc.ABC):
    """Where enrolments live. Every method may raise :class:`StoreUnavailable`."""

    description: str
    shared = False  # True: other processes write too (follow :meth:`changes`)
    # True: :meth:`gallery` gives the store's own gallery, which enroll, delete and put_embeddings change in place
    # (the caller searches it and never changes it); False: a new gallery that the caller keeps up to date.
    live_gallery = False

    @abc.abstractmethod
    def gallery(self, model_id: str) -> Gallery:
        """Everything stored for ``model_id`` as a new gallery (empty if nothing; photos not yet embedded with
        this model are missing from it: see :meth:`missing`)."""

    @abc.abstractmethod
    def missing(self, model_id: str, limit: int, identities: set[str] | None = None) -> list[StoredPhoto]:
        """Up to ``limit`` stored photos (of ``identities`` if given) with no result yet for ``model_id``."""

    @abc.abstractmethod
    def count_missing(self, model_id: str) -> tuple[int, int]:
        """``(photos without a result for model_id, stored photos)``."""

    @abc.abstractmethod
    def put_embeddings(self, model_id: str, results: list[tuple[StoredPhoto, np.ndarray | None]]) -> None:
        """Store ``model_id``'s embedding of each photo (``None``: no face found, not tried again)."""

    @abc.abstractmethod
    def enroll(self, identity: str, *, new: bool, model_id: str, photos: list[bytes], embeddings: np.ndarray, keep: bool) -> list[str]:
        """Add photos of an identity with their embeddings by ``model_id``, all or nothing; the sources.

        Raises:
            IdentityExists: ``new`` and the identity exists (also when another process enrolled it just now).
            UnknownIdentity: not ``new`` and the identity does not exist.
        """

    @abc.abstractmethod
    def delete(self, identity: str) -> dict[str, int]:
        """Remove an identity with its photos and embeddings: ``{'embeddings': of any model, 'photos': n}``.

        Raises:
            UnknownIdentity: nothing is stored for it (nothing is changed).
        """

    @abc.abstractmethod
    def has(self, identity: str) -> bool:
        """Whether anything (an embedding by any model, a photo) is stored for ``identity``."""

    def names(self) -> set[str]:
        """Every stored identity (for following another process's deletions)."""
        raise NotImplementedError(f"{type(self).__name__} has one writer: it never re-reads its identities")

    def changes(self, cursor: int) -> tuple[int, set[str]]:
        """Identities changed by any process after ``cursor``, and the new cursor (embedded: none)."""
        return cursor, set()

    def head(self) -> int:
        """The latest change's cursor (embedded: always 0)."""
        return 0

    def identity(self, model_id: str, identity: str) -> tuple[np.ndarray, list[str]]:
        """``model_id``'s embeddings of one identity and their sources (for stores other processes write)."""
        raise NotImplementedError(f"{type(self).__name__} has one writer: it never re-reads an identity")

    def promote(self, model_id: str) -> None:
        """``model_id`` is now the served model (the embedded store writes its gallery as ``gallery.npz``)."""
        return None

    def take_damage(self) -> tuple[str, str, str | None] | None:
        """A damaged gallery file found while loading: ``(file, problem, where it was moved)``, once."""
        return None

    def close(self) -> None:
        """Release connections."""
        return None


_COMPACT_BYTES = 64 << 20  # a journal this large is folded into the gallery file (at 1M faces: ~25k enrolments)
_COMPACT_AT_START = 1 << 20  # at start, a journal this large is folded in (a few seconds at 1M faces)


class EmbeddedStore(GalleryStore):
    """The files of one process's ``state_dir`` (see the module docstring)."""

    live_gallery = True

    def __init__(self, state_dir: Path, keep_photos: bool) -> None:
        self.path = state_dir / "gallery.npz"
        self.partial_path = state_dir / "gallery-rebuild.npz"
        self.photos = EnrolledPhotos(state_dir / "enrolled")
        self.keep_photos = keep_photos
        self.description = f"files in {state_dir}"
        self._galleries: dict[str, Gallery] = {}  # model id -> what is stored for it (the served one is the file)
        self._served: str | None = None
        self._no_face: dict[str, set[str]] = {}  # model id -> sources it found no face in (not tried again)
        self._damage: tuple[str, str, str | None] | None = None
        self._done: dict[str, set[str]] = {}  # model id -> sources with a result (embedding or no face)

    # -- per model galleries -----------------------------------------------------------------------------------
    def _load(self, model_id: str) -> Gallery:
        """``gallery.npz`` if it is ``model_id``'s, else the rebuild in progress if it is, else an empty gallery.

        A damaged ``gallery.npz`` is moved aside (kept) and reported by :meth:`take_damage`; a damaged partial
        file is deleted (it is only a head start)."""
        with state_lock(self.path.parent):
            for path in (self.path, self.partial_path):
                if not path.exists():
                    continue
                try:
                    gallery = Gallery.load(path)
                except GalleryError as exc:
                    if path == self.path:
                        moved = move_aside(path)
                        self._damage = (str(path), str(exc), str(moved) if moved else None)
                    else:
                        log.warning("partial gallery %s is unreadable (%s): the rebuild starts over", path, exc)
                        path.unlink(missing_ok=True)
                    continue
                if gallery.model_id == model_id:
                    if path == self.partial_path:
                        log.info("resuming the gallery rebuild for %s: %d embeddings done", model_id, len(gallery))
                    return gallery
                if path == self.path and not self.keep_photos:
                    log.warning("gallery %s was made by another model and no photos are kept: starting empty", path)
        return Gallery(model_id)

    def _gallery(self, model_id: str) -> Gallery:
        if model_id not in self._galleries:
            self._galleries[model_id] = self._load(model_id)
        return self._galleries[model_id]

    def take_damage(self) -> tuple[str, str, str | None] | None:
        damage, self._damage = self._damage, None
        return damage

    def _file(self, model_id: str) -> Path:
        """The file whose journal takes ``model_id``'s changes: the one its gallery was read from or last written
        to; for a new gallery, ``gallery.npz`` when it is served, else the rebuild's file."""
        tied = self._galleries[model_id].file
        return tied if tied is not None else self.path if model_id == self._served else self.partial_path

    def _compact(self, model_id: str) -> None:
        """Fold a large journal into the gallery file (a full rewrite, rare: see ``_COMPACT_BYTES``)."""
        gallery = self._galleries[model_id]
        if gallery.journal_bytes >= _COMPACT_BYTES:
            log.info("gallery journal of %s is %d bytes: rewriting the gallery file", model_id, gallery.journal_bytes)
            gallery.save(self._file(model_id))

    def gallery(self, model_id: str) -> Gallery:
        return self._gallery(model_id)

    def _done_sources(self, model_id: str) -> set[str]:
        if model_id not in self._done:
            self._done[model_id] = {source for _, source in self._gallery(model_id).labelled_sources()}
        return self._done[model_id]

    def _pending(self, model_id: str) -> list[StoredPhoto]:
        done = self._done_sources(model_id) | self._no_face.get(model_id, set())
        return [
            StoredPhoto(f"{identity}/{path.name}", identity, b"")
            for identity, paths in self.photos.all().items()
            for path in paths
            if f"{identity}/{path.name}" not in done
        ]

    def missing(self, model_id: str, limit: int, identities: set[str] | None = None) -> list[StoredPhoto]:
        if not self.keep_photos:
            return []
        todo = [p for p in self._pending(model_id) if identities is None or p.identity in identities][:limit]
        return [StoredPhoto(p.source, p.identity, (self.photos.root / p.source).read_bytes()) for p in todo]

    def count_missing(self, model_id: str) -> tuple[int, int]:
        if not self.keep_photos:
            return 0, 0
        return len(self._pending(model_id)), sum(len(p) for p in self.photos.all().values())

    def put_embeddings(self, model_id: str, results: list[tuple[StoredPhoto, np.ndarray | None]]) -> None:
        gallery = self._gallery(model_id)
        found: dict[str, list[tuple[str, np.ndarray]]] = {}
        for photo, vector in results:
            if vector is None:
                self._no_face.setdefault(model_id, set()).add(photo.source)
            elif (self.photos.root / photo.source).exists():  # not deleted meanwhile
                found.setdefault(photo.identity, []).append((photo.source, vector))
        for identity, rows in found.items():  # one journal record per identity
            sources = [source for source, _ in rows]
            gallery.add(identity, np.stack([v for _, v in rows]), sources, journal=self._file(model_id))
            self._done_sources(model_id).update(sources)
        self._compact(model_id)

    # -- changes -----------------------------------------------------------------------------------------------
    def enroll(self, identity: str, *, new: bool, model_id: str, photos: list[bytes], embeddings: np.ndarray, keep: bool) -> list[str]:
        gallery = self._gallery(model_id)
        exists = identity in gallery
        if new and exists:
            raise IdentityExists(f"identity {identity!r} is already enrolled: add images to it instead")
        if not new and not exists:
            raise UnknownIdentity(f"identity {identity!r} is not enrolled")
        sources = [self.photos.save(identity, data) if keep else "" for data in photos]
        # journalled (fsync) before the in-place change: nothing changes in memory if the write fails, and once
        # this returns the enrolment survives a crash
        gallery.add(identity, embeddings, sources, journal=self._file(model_id))
        if model_id in self._done:
            self._done[model_id].update(sources)
        self._compact(model_id)
        return sources

    def has(self, identity: str) -> bool:
        galleries = [*self._galleries.values(), *([self._gallery(self._served)] if self._served else [])]
        return any(identity in g for g in galleries) or (self.photos.root / identity).is_dir()

    def delete(self, identity: str) -> dict[str, int]:
        """Every model's gallery file without the identity, and its photo folder removed (the photos' names, the
        sources, leave the in-memory bookkeeping too)."""
        if not self.has(identity):
            raise UnknownIdentity(f"identity {identity!r} is not enrolled")
        embeddings = 0
        for model_id, gallery in list(self._galleries.items()):
            if identity in gallery:  # journalled, then removed in place (searches never see it again)
                embeddings += gallery.remove(identity, journal=self._file(model_id))
        folder = self.photos.root / identity
        photos = sum(p.is_file() for p in folder.iterdir()) if folder.is_dir() else 0
        self.photos.remove(identity)
        for sources in self._no_face.values():
            sources.difference_update({s for s in sources if s.startswith(f"{identity}/")})
        self._done.clear()
        return {"embeddings": embeddings, "photos": photos}

    def promote(self, model_id: str) -> None:
        """Make ``model_id``'s gallery ``gallery.npz`` (a finished rebuild replaces the old model's file)."""
        with state_lock(self.path.parent):
            self._served = model_id
            gallery = self._gallery(model_id)
            if gallery.file != self.path or gallery.journal_bytes >= _COMPACT_AT_START:
                gallery.save(self.path)  # a rebuilt gallery becomes the file; a long journal is folded in
            self.partial_path.unlink(missing_ok=True)
            journal_path(self.partial_path).unlink(missing_ok=True)
            for other in [m for m in self._galleries if m != model_id]:
                del self._galleries[other]
                self._done.pop(other, None)
