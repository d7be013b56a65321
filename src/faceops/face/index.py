"""Approximate nearest-neighbour index for 1:N search in large galleries, and its file next to the gallery.

The gallery (:mod:`faceops.face.gallery`) searches exactly up to ``EXACT_BELOW`` embeddings; above it, an ANN
index proposes candidates and the gallery re-scores them exactly against its stored vectors. This module holds
the one small interface such an index has (:class:`VectorIndex`: add with integer keys, remove, top-k search,
save/load, copy), the implementation FaceOps ships (:class:`UsearchIndex`), building one from vectors
(:func:`build_index`) and writing/reading it with a checksum so a damaged or foreign file is detected and
rebuilt instead of trusted (:func:`write_index`, :func:`read_index`).

Why usearch (``benchmarks/gallery_index.py`` -> ``benchmarks/results/gallery_index.json``; 2-core CPU shared
with other work, 512-d, the gallery's top-5 identities after exact re-scoring of 64 candidates, the same
LFW-based synthetic galleries for every library):

- **Memory**: it stores int8-quantised vectors next to its HNSW graph; hnswlib stores float32 only (2 GB of
  vectors alone at 1M, plus the graph), which cannot meet the 2 GB target next to the float16 vectors the gallery
  keeps for re-scoring. FAISS's HNSW-SQ8 is as small.
- **Deletion**: ``remove`` takes keys out of the results at once and frees them; hnswlib's ``mark_deleted`` works
  too, but FAISS's HNSW indexes cannot remove at all (tombstones filtered after the search, never reclaimed until
  a rebuild), and its IVF indexes remove by scanning the lists.
- **Speed**: at 10k and 100k the three have the same top-5 p50 (about 1 ms); usearch built fastest and had the
  lowest enrolment latency, but it ran with ``expansion_add`` 64 against 128 for the others, which also explains
  its lower recall@5 at 100k (0.995 against 1.0 for FAISS and 0.997 for hnswlib).
- **Operations**: one self-contained wheel (no BLAS), ``copy``, save/load from a path or a buffer.

Not done: at 1M (250k identities, 625 per LFW base embedding) these settings give recall@5 0.77 (0.91 with four
times the search depth) at p50 1.5 ms, and 1.93 GB of RSS growth. The graph (connectivity 16, expansion_add 64)
is too sparse for that density: a 100k gallery with the same density loses the best embedding for 2.3% of the
probes; float16 vectors do not help, connectivity 32 with expansion_add 128 finds it for all of them, at 3.2x the
build time (``diagnosis_1m_density_at_100k`` in the result file). Those settings are not the default yet because
they were not measured at 1M (a build of about 45 minutes on the shared 2 cores, and about 130 MB more graph).

Only this module imports the ANN library, so replacing it means one new :class:`VectorIndex` class.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Protocol, Self

import numpy as np

from faceops.errors import GalleryError

__all__ = ["EXACT_BELOW", "UsearchIndex", "VectorIndex", "build_index", "read_index", "timed_build", "write_index"]

log = logging.getLogger(__name__)

EXACT_BELOW = 10_000
"""Galleries with fewer embeddings are searched exactly (a matrix product is fast and simplest there)."""

_CHUNK = 1 << 16


class VectorIndex(Protocol):
    """What the gallery needs from an ANN index over unit vectors (cosine similarity), keyed by integers."""

    library: ClassVar[str]

    @classmethod
    def create(cls, dim: int) -> Self:
        """An empty index for ``dim``-dimensional vectors."""
        ...

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read what :meth:`save` wrote; raises on a file this library cannot read."""
        ...

    def __len__(self) -> int: ...

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Insert ``vectors`` (N, D) under ``keys`` (N,), new non-negative integers."""
        ...

    def remove(self, keys: np.ndarray) -> None:
        """Take ``keys`` out: no later search returns them."""
        ...

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """The keys of (about) the ``k`` nearest vectors of each query, best first: (Q, k), -1 where fewer."""
        ...

    def save(self, path: Path) -> None: ...

    def copy(self) -> Self: ...


class UsearchIndex:
    """usearch's HNSW over int8-quantised vectors (cosine).

    Args:
        index: a ``usearch.index.Index``; use :meth:`create` or :meth:`load`.
    """

    library: ClassVar[str] = "usearch"
    connectivity: ClassVar[int] = 16
    expansion_add: ClassVar[int] = 64
    expansion_search: ClassVar[int] = 96
    build_threads: ClassVar[int] = 1
    """Insertion threads. One: a graph built concurrently is worse, and by how much depends on the core count
    (seeded 20k gallery, 300 probes: top-1 always right with one thread; with 16 or 64 threads the probe's own
    identity was missed for 1 probe in 300 in some builds, which is how CI on a many-core machine failed the
    recall test). One thread also makes the graph, hence the answers, the same on every machine."""

    def __init__(self, index: object) -> None:
        self._index = index

    @classmethod
    def create(cls, dim: int) -> UsearchIndex:
        from usearch.index import Index

        return cls(
            Index(
                ndim=dim,
                metric="cos",
                dtype="i8",
                connectivity=cls.connectivity,
                expansion_add=cls.expansion_add,
                expansion_search=cls.expansion_search,
            )
        )

    @classmethod
    def load(cls, path: Path) -> UsearchIndex:
        from usearch.index import Index

        index = Index.restore(os.fspath(path))
        if index is None:
            raise GalleryError(f"{path}: not a usearch index")
        index.expansion_search = cls.expansion_search  # type: ignore[misc]  # a setter usearch's stub misses
        return cls(index)

    def __len__(self) -> int:
        return len(self._index)  # type: ignore[arg-type]

    @property
    def search_depth(self) -> int:
        """HNSW's ``ef`` at search: more is slower and finds more of the true neighbours."""
        return int(self._index.expansion_search)  # type: ignore[attr-defined]

    @search_depth.setter
    def search_depth(self, value: int) -> None:
        self._index.expansion_search = value  # type: ignore[attr-defined]

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self._index.add(  # type: ignore[attr-defined]
            np.asarray(keys, dtype=np.uint64),
            np.ascontiguousarray(vectors, dtype=np.float32),
            threads=self.build_threads,
        )

    def remove(self, keys: np.ndarray) -> None:
        self._index.remove(np.asarray(keys, dtype=np.uint64))  # type: ignore[attr-defined]

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        found = self._index.search(np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32), k)  # type: ignore[attr-defined]
        # one query gives Matches (only what was found), several give BatchMatches (padded with key 0, counts)
        found_keys = np.atleast_2d(found.keys).astype(np.int64)
        counts = getattr(found, "counts", None)
        counts = np.full(len(found_keys), found_keys.shape[1]) if counts is None else np.atleast_1d(counts)
        keys = np.full((len(found_keys), k), -1, dtype=np.int64)
        for row, (hits, count) in enumerate(zip(found_keys, counts, strict=True)):
            keys[row, :count] = hits[:count]
        return keys

    def save(self, path: Path) -> None:
        self._index.save(os.fspath(path))  # type: ignore[attr-defined]

    def copy(self) -> UsearchIndex:
        duplicate = self._index.copy()  # type: ignore[attr-defined]
        duplicate.expansion_search = self.expansion_search
        return UsearchIndex(duplicate)


def build_index(
    index_type: type[VectorIndex],
    keys: np.ndarray,
    vectors: np.ndarray,
    progress: Callable[[int, int], None] | None = None,
) -> VectorIndex:
    """A new index holding ``vectors`` (any float dtype, converted chunk by chunk) under ``keys``."""
    index = index_type.create(int(vectors.shape[1]))
    for start in range(0, len(keys), _CHUNK):
        stop = min(start + _CHUNK, len(keys))
        index.add(keys[start:stop], np.asarray(vectors[start:stop], dtype=np.float32))
        if progress:
            progress(stop, len(keys))
    return index


def write_index(index: VectorIndex, path: Path) -> dict[str, object]:
    """Save ``index`` atomically at ``path``; returns the stamp :func:`read_index` checks (library, size, CRC)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        index.save(Path(tmp))
        crc, size = _crc32(Path(tmp))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"library": index.library, "file": path.name, "bytes": size, "crc32": crc, "count": len(index)}


def read_index(index_type: type[VectorIndex], path: Path, stamp: object, count: int) -> VectorIndex:
    """The index at ``path`` if it is the one ``stamp`` describes and holds ``count`` vectors.

    Raises:
        GalleryError: naming the file and what is wrong (missing, other library, size or checksum differs,
            unreadable, wrong number of vectors); the caller rebuilds the index from the gallery.
    """
    if not isinstance(stamp, dict):
        raise GalleryError(f"{path}: the gallery header describes no index")
    if stamp.get("library") != index_type.library:
        raise GalleryError(f"{path}: written by {stamp.get('library')!r}, not {index_type.library!r}")
    if not path.is_file():
        raise GalleryError(f"{path}: index file not found")
    crc, size = _crc32(path)
    if size != stamp.get("bytes") or crc != stamp.get("crc32"):
        raise GalleryError(f"{path}: size or checksum differs from the gallery's record (damaged or replaced)")
    try:
        index = index_type.load(path)
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:
        raise GalleryError(f"{path}: unreadable index: {type(exc).__name__}: {exc}") from exc
    if len(index) != count or stamp.get("count") != count:
        raise GalleryError(f"{path}: holds {len(index)} vectors but the gallery has {count}")
    return index


def _crc32(path: Path) -> tuple[int, int]:
    crc, size = 0, 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            crc, size = zlib.crc32(block, crc), size + len(block)
    return crc, size


def timed_build(
    index_type: type[VectorIndex], keys: np.ndarray, vectors: np.ndarray, why: str
) -> VectorIndex:
    """:func:`build_index` with a log line saying why and how long it took."""
    start = time.perf_counter()
    log.info("building the %s index of %d embeddings (%s)", index_type.library, len(keys), why)
    index = build_index(index_type, keys, vectors)
    log.info("%s index of %d embeddings built in %.1f s", index_type.library, len(keys), time.perf_counter() - start)
    return index
