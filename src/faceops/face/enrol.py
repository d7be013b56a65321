"""Enrolment: photos of people into a gallery, one way for the CLI, the service, the demo and monitoring.

The input is a folder with one sub-folder of photos per identity (:func:`people_in_folder`) or any list of
``(identity, image)`` pairs. :func:`embed_people` embeds the subject face of each photo (detection and embedding in
batches, through one :class:`~faceops.face.recognizer.FaceRecognizer`); :func:`enrol` also adds them to a gallery,
skipping photos it already holds. Both return an :class:`Enrolment`: what was accepted and, for every photo that
could not be used, why (an unreadable image, no face).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceops.errors import DatasetError, GalleryError, InvalidImage, NoFaceDetected
from faceops.face.gallery import Gallery, valid_identity
from faceops.face.images import ImageSource, iter_image_paths
from faceops.face.recognizer import FaceRecognizer

__all__ = ["Enrolment", "Rejected", "embed_people", "enrol", "people_in_folder"]

Photo = tuple[str, ImageSource]  # (identity, image)


@dataclass(frozen=True)
class Rejected:
    """A photo that was not enrolled.

    Attributes:
        index: its position in the input.
        identity: whom it was meant for.
        name: how it is named (its path unless names were given).
        error: why (:class:`~faceops.errors.InvalidImage`, :class:`~faceops.errors.NoFaceDetected`).
    """

    index: int
    identity: str
    name: str
    error: Exception

    @property
    def reason(self) -> str:
        return str(self.error)


@dataclass
class Enrolment:
    """The outcome of enrolling photos.

    Attributes:
        indices: input positions of the accepted photos, in input order.
        identities: the identity of each accepted photo.
        names: the name of each accepted photo (the gallery source by default).
        embeddings: (accepted, D) float32 subject embeddings.
        rejected: the photos that could not be used, with the reason.
        skipped: input positions of photos the gallery already held (same identity and name), not embedded again.
    """

    indices: list[int]
    identities: list[str]
    names: list[str]
    embeddings: np.ndarray
    rejected: list[Rejected] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)

    @property
    def added(self) -> dict[str, int]:
        """Identity -> number of accepted photos, in input order."""
        counts: dict[str, int] = {}
        for identity in self.identities:
            counts[identity] = counts.get(identity, 0) + 1
        return counts

    def add_to(self, gallery: Gallery, sources: Sequence[str] | None = None) -> None:
        """Add the accepted embeddings to ``gallery``, one call per identity.

        Args:
            sources: the gallery source of each accepted photo (default: :attr:`names`).
        """
        sources = list(self.names if sources is None else sources)
        if len(sources) != len(self.indices):
            raise GalleryError(f"{len(sources)} source names for {len(self.indices)} accepted photos")
        rows: dict[str, list[int]] = {}
        for row, identity in enumerate(self.identities):
            rows.setdefault(identity, []).append(row)
        for identity, picked in rows.items():
            gallery.add(identity, self.embeddings[picked], [sources[i] for i in picked])


def people_in_folder(folder: str | Path) -> list[Photo]:
    """``(identity, path)`` for every photo of a folder holding one sub-folder of photos per identity.

    Raises:
        DatasetError: the folder does not exist or has no sub-folders.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder: expected one folder of photos per identity")
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    if not people:
        raise DatasetError(f"{folder} has no sub-folders: expected one folder of photos per identity")
    return [(person.name, path) for person in people for path in iter_image_paths([person])]


def _photos(people: str | Path | Iterable[Photo], names: Sequence[str] | None) -> tuple[list[Photo], list[str]]:
    photos = people_in_folder(people) if isinstance(people, (str, Path)) else list(people)
    photos = [(valid_identity(identity), image) for identity, image in photos]  # refuse a bad name before embedding
    if names is None:
        names = [str(image) if isinstance(image, (str, Path)) else "" for _, image in photos]
    if len(names) != len(photos):
        raise GalleryError(f"{len(names)} names for {len(photos)} photos: one name per photo is needed")
    return photos, list(names)


def _named(error: Exception, name: str) -> Exception:
    if isinstance(error, NoFaceDetected) and error.source is None and name:
        return NoFaceDetected(name)  # an in-memory image: name it as the caller does
    return error


def embed_people(
    recognizer: FaceRecognizer,
    people: str | Path | Iterable[Photo],
    *,
    names: Sequence[str] | None = None,
    load: Callable[[Any, str], np.ndarray] | None = None,
    chunk: int = 64,
    progress: Callable[[int], None] | None = None,
) -> Enrolment:
    """The subject embedding of every photo of ``people``, without touching a gallery.

    Args:
        recognizer: the face recognizer (its model must be the gallery's).
        people: a folder with one sub-folder per identity, or ``(identity, image)`` pairs.
        names: how to name each photo in errors and as its gallery source (default: its path, else "").
        load: decodes ``(image, name)`` into an RGB array or raises :class:`~faceops.errors.InvalidImage`, e.g.
            with a service's own size limits (default: the recognizer's decoding).
        chunk: photos decoded and detected together (at most this many decoded images are held at once).
        progress: called with the number of photos done, as they are done.

    Raises:
        DatasetError: a folder without identity sub-folders. GalleryError: an invalid identity name.
    """
    photos, names = _photos(people, names)
    images = [image for _, image in photos]
    if load is None:
        result = recognizer.embed_subjects(images, chunk=chunk, progress=progress)
        embeddings, errors = result.embeddings, result.errors
    else:
        embeddings, errors = _embed_loaded(recognizer, images, names, load, chunk, progress)
    accepted = [i for i in range(len(photos)) if i not in errors]
    return Enrolment(
        indices=accepted,
        identities=[photos[i][0] for i in accepted],
        names=[names[i] for i in accepted],
        embeddings=embeddings[accepted],
        rejected=[Rejected(i, photos[i][0], names[i], _named(errors[i], names[i])) for i in sorted(errors)],
    )


def _embed_loaded(
    recognizer: FaceRecognizer,
    images: list[ImageSource],
    names: list[str],
    load: Callable[[Any, str], np.ndarray],
    chunk: int,
    progress: Callable[[int], None] | None,
) -> tuple[np.ndarray, dict[int, Exception]]:
    embeddings = np.zeros((len(images), recognizer.embedder.dim), dtype=np.float32)
    errors: dict[int, Exception] = {}
    for start in range(0, len(images), chunk):
        loaded: dict[int, np.ndarray] = {}
        for i in range(start, min(start + chunk, len(images))):
            try:
                loaded[i] = load(images[i], names[i])
            except InvalidImage as exc:
                errors[i] = exc
        if loaded:
            result = recognizer.embed_subjects(list(loaded.values()), chunk=chunk)
            for j, i in enumerate(loaded):
                if j in result.errors:
                    errors[i] = result.errors[j]
                else:
                    embeddings[i] = result.embeddings[j]
        if progress:
            progress(min(chunk, len(images) - start))
    return embeddings, errors


def enrol(
    recognizer: FaceRecognizer,
    gallery: Gallery,
    people: str | Path | Iterable[Photo],
    *,
    names: Sequence[str] | None = None,
    skip_enrolled: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Enrolment:
    """Embed the photos of ``people`` and add them to ``gallery`` (which is changed in place, not saved).

    Args:
        recognizer: the face recognizer; it must use the model that built the gallery.
        gallery: where the embeddings go.
        people: a folder with one sub-folder per identity, or ``(identity, image)`` pairs.
        names: how to name each photo in errors and as its gallery source (default: its path).
        skip_enrolled: leave out photos the gallery already holds under the same identity and name, so enrolling
            a folder again adds only its new photos.
        progress: called with the number of photos done (skipped ones count as done at once).

    Raises:
        GalleryError: the gallery was built by another model, or an identity name is invalid.
        DatasetError: a folder without identity sub-folders.
    """
    photos, names = _photos(people, names)
    gallery.check_model(recognizer.model_id)
    todo = list(range(len(photos)))
    if skip_enrolled and len(gallery):
        held = {(identity, source) for identity in gallery.identities for source in gallery.sources(identity)}
        todo = [i for i in todo if not names[i] or (photos[i][0], names[i]) not in held]
    skipped = sorted(set(range(len(photos))) - set(todo))
    if progress and skipped:
        progress(len(skipped))
    done = embed_people(recognizer, [photos[i] for i in todo], names=[names[i] for i in todo], progress=progress)
    done.indices = [todo[i] for i in done.indices]
    done.rejected = [Rejected(todo[r.index], r.identity, r.name, r.error) for r in done.rejected]
    done.skipped = skipped
    done.add_to(gallery)
    return done
