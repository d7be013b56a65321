"""The gallery: enrolled identities with several embeddings each, stored without pickle, searched vectorised.

A gallery file is a NumPy ``.npz`` written with ``allow_pickle=False``: the (M, 512) float32 embeddings, their
identity labels and source names as fixed-width unicode arrays, and a JSON header (format version, the model id
that produced the embeddings). Saves are atomic (a temporary file renamed over the old one), so a crash or a bad
enrolment never loses what was stored before.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceops.errors import GalleryError, UnknownIdentity

__all__ = ["Gallery", "Match", "UNKNOWN", "valid_identity"]

UNKNOWN = "unknown"
_FORMAT_VERSION = 1


def valid_identity(identity: str) -> str:
    """The identity name, stripped; :class:`GalleryError` for an empty name or the reserved ``unknown``."""
    name = identity.strip()
    if not name or name == UNKNOWN:
        raise GalleryError(f"invalid identity name {identity!r}")
    return name


@dataclass(frozen=True)
class Match:
    """One identification answer: the best identities with cosine scores, and the decision at the threshold."""

    identity: str
    score: float
    candidates: tuple[tuple[str, float], ...]

    @property
    def is_known(self) -> bool:
        return self.identity != UNKNOWN

    def to_dict(self) -> dict[str, object]:
        return {
            "identity": self.identity,
            "score": round(self.score, 6),
            "candidates": [{"identity": n, "score": round(s, 6)} for n, s in self.candidates],
        }


class Gallery:
    """Enrolled identities and their embeddings.

    Args:
        model_id: the embedder that made (and must keep making) the embeddings; mixing models is refused.
    """

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self._embeddings = np.zeros((0, 0), dtype=np.float32)
        self._labels = np.zeros(0, dtype=str)
        self._sources = np.zeros(0, dtype=str)

    # -- contents -----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._labels)

    @property
    def identities(self) -> dict[str, int]:
        """Identity -> number of embeddings, sorted by name."""
        names, counts = np.unique(self._labels, return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts, strict=True)}

    def sources(self, identity: str) -> list[str]:
        self._require(identity)
        return [str(s) for s in self._sources[self._labels == identity]]

    def add(self, identity: str, embeddings: np.ndarray, sources: list[str] | None = None) -> None:
        """Enrol more embeddings for an identity (new or existing)."""
        identity = valid_identity(identity)
        vectors = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if len(vectors) == 0:
            return
        if self._embeddings.size and vectors.shape[1] != self._embeddings.shape[1]:
            raise GalleryError(f"embedding size {vectors.shape[1]} does not match the gallery's {self.dim}")
        if not np.all(np.isfinite(vectors)):
            raise GalleryError("embeddings contain NaN or infinite values")
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        sources = sources or [""] * len(vectors)
        if len(sources) != len(vectors):
            raise GalleryError("one source name per embedding is needed")
        self._embeddings = vectors if not self._embeddings.size else np.vstack([self._embeddings, vectors])
        self._labels = np.concatenate([self._labels, np.full(len(vectors), identity)])
        self._sources = np.concatenate([self._sources, np.asarray(sources, dtype=str)])
        self._sort()

    def remove(self, identity: str) -> int:
        """Delete every embedding of an identity; returns how many were removed."""
        self._require(identity)
        keep = self._labels != identity
        removed = int((~keep).sum())
        self._embeddings, self._labels, self._sources = self._embeddings[keep], self._labels[keep], self._sources[keep]
        return removed

    @property
    def dim(self) -> int:
        return int(self._embeddings.shape[1]) if self._embeddings.size else 0

    # -- search -------------------------------------------------------------------------------------------------
    def scores(self, queries: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """Cosine score of each query against each identity (the best of its embeddings): (Q, I) and the names."""
        if len(self) == 0:
            raise GalleryError("the gallery is empty: enrol identities first")
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise GalleryError(f"query embedding size {queries.shape[1]} does not match the gallery's {self.dim}")
        sims = queries @ self._embeddings.T
        names, starts = np.unique(self._labels, return_index=True)  # labels are kept sorted, so groups are runs
        return np.maximum.reduceat(sims, starts, axis=1), [str(n) for n in names]

    def identify(
        self, queries: np.ndarray | Sequence[np.ndarray], threshold: float, top_k: int = 3
    ) -> list[Match]:
        """The best identities for each query; ``unknown`` when the best score is below ``threshold``."""
        per_identity, names = self.scores(queries)
        k = min(top_k, len(names))
        order = np.argsort(-per_identity, axis=1)[:, :k]
        matches = []
        for row, ranks in zip(per_identity, order, strict=True):
            candidates = tuple((names[i], float(row[i])) for i in ranks)
            best_name, best = candidates[0]
            matches.append(Match(best_name if best >= threshold else UNKNOWN, best, candidates))
        return matches

    # -- storage ------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically: the old file stays intact until the new one is complete."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = json.dumps({"format": _FORMAT_VERSION, "model_id": self.model_id})
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    header=np.array(header),
                    embeddings=self._embeddings,
                    labels=self._labels.astype(str),
                    sources=self._sources.astype(str),
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> Gallery:
        """Read a gallery written by :meth:`save`.

        Raises:
            GalleryError: naming the file, when it is missing, not a ``.npz`` archive (empty, truncated,
                garbage), holds pickled objects, or lacks or mangles the gallery's arrays.
        """
        path = Path(path)
        if not path.is_file():
            raise GalleryError(f"gallery not found: {path}")
        try:
            with path.open("rb") as head:
                magic = head.read(4)
        except OSError as exc:
            raise GalleryError(f"cannot read the gallery {path}: {exc}") from exc
        if magic != b"PK\x03\x04":  # an .npz is a ZIP archive; np.load would try to unpickle anything else
            what = "an empty file" if not magic else "not a .npz archive"
            raise GalleryError(f"{path} is not a FaceOps gallery: {what}")
        try:
            # our own handle: np.load leaves the file it opened unclosed when the archive is damaged
            with path.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
                missing = sorted({"header", "embeddings", "labels", "sources"} - set(data.files))
                if missing:
                    raise GalleryError(f"{path} is not a FaceOps gallery: no {', '.join(missing)} array")
                header = json.loads(str(data["header"]))
                embeddings, labels, sources = data["embeddings"], data["labels"], data["sources"]
        except GalleryError:
            raise
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
            if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
                raise GalleryError(f"{path} holds Python objects (pickled data), which are never loaded") from exc
            raise GalleryError(f"{path} is a damaged or foreign gallery file: {type(exc).__name__}: {exc}") from exc
        _check_arrays(path, header, embeddings, labels, sources)
        gallery = cls(header["model_id"])
        gallery._embeddings = embeddings.astype(np.float32) if len(labels) else np.zeros((0, 0), dtype=np.float32)
        gallery._labels, gallery._sources = labels.astype(str), sources.astype(str)
        gallery._sort()
        return gallery

    @classmethod
    def open_or_create(cls, path: str | Path, model_id: str) -> Gallery:
        """Load the gallery at ``path`` if it exists, else an empty one; refuses one made by another model."""
        if not Path(path).exists():
            return cls(model_id)
        gallery = cls.load(path)
        gallery.check_model(model_id)
        return gallery

    def check_model(self, model_id: str) -> None:
        if self.model_id != model_id:
            raise GalleryError(
                f"the gallery was built with model {self.model_id!r} but the current model is {model_id!r}: "
                "re-enrol the identities with the current model"
            )

    def _require(self, identity: str) -> None:
        if identity not in set(self._labels.tolist()):
            raise UnknownIdentity(f"identity {identity!r} is not enrolled")

    def _sort(self) -> None:
        order = np.argsort(self._labels, kind="stable")
        self._embeddings, self._labels, self._sources = self._embeddings[order], self._labels[order], self._sources[order]


def _check_arrays(path: Path, header: object, embeddings: np.ndarray, labels: np.ndarray, sources: np.ndarray) -> None:
    """:class:`GalleryError` naming ``path`` unless the arrays are what :meth:`Gallery.save` writes."""
    if not isinstance(header, dict):
        raise GalleryError(f"{path}: the gallery header is not a JSON object")
    if header.get("format") != _FORMAT_VERSION:
        raise GalleryError(f"{path}: unsupported gallery format {header.get('format')!r}")
    if not isinstance(header.get("model_id"), str) or not header["model_id"]:
        raise GalleryError(f"{path}: the gallery header names no model_id")
    if labels.ndim != 1 or sources.ndim != 1 or labels.dtype.kind != "U" or sources.dtype.kind != "U":
        raise GalleryError(f"{path}: labels and sources must be 1-D arrays of text")
    if len(labels) != len(sources):
        raise GalleryError(f"{path}: {len(labels)} labels but {len(sources)} sources")
    if len(labels) == 0:
        return
    if embeddings.ndim != 2 or embeddings.dtype.kind != "f" or embeddings.shape[0] != len(labels):
        raise GalleryError(
            f"{path}: embeddings of shape {embeddings.shape} ({embeddings.dtype}) do not match "
            f"{len(labels)} labels (expected a ({len(labels)}, D) float array)"
        )
    if not np.all(np.isfinite(embeddings)):
        raise GalleryError(f"{path}: embeddings contain NaN or infinite values")
