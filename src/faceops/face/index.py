"""Vector indexes for 1:N search in large galleries, and their file next to the gallery.

The gallery (:mod:`faceops.face.gallery`) searches exactly up to ``EXACT_BELOW`` embeddings; above it, an index
holds the vectors (float16, the gallery's only copy) and proposes candidates, which the gallery re-scores exactly
and groups per identity. This module holds the one small interface such an index has (:class:`VectorIndex`: add
with ascending integer keys, remove, top-k search, the stored vectors, save/load, copy), the two implementations
(:class:`PQScanIndex`, the default, in :mod:`faceops.face.pq_scan`, and :class:`UsearchIndex`), building one from
vectors (:func:`build_index`) and writing/reading it with a checksum so a damaged or foreign file is detected and
rebuilt instead of trusted (:func:`write_index`, :func:`read_index`).

Why FAISS's PQ fast scan by default, and not a graph (``benchmarks/index_choice.py`` ->
``benchmarks/results/index_choice_1m.jsonl``: one fitted synthetic 512-d gallery of 1M embeddings, 250k
identities, 300 probes, recall@5 of the top-5 identities after exact re-scoring against exact search; the
2-core machine quiet):

- **Face search is the worst case for a graph.** A probe's own identity is found at once, but the four
  runners-up are strangers at cosine ~0.45 among 250k identities, near-ties a graph walk misses. usearch's HNSW
  (connectivity 16, expansion_add 64, float16) built in 25 minutes on 2 threads and reached recall@5 0.909 /
  0.963 / 0.988 at depth 512 / 1024 / 2048, p50 17 / 26 / 56 ms. At 100k a denser graph (connectivity 32,
  expansion_add 128) reached 0.998 at depth 256 in 8.5 ms where connectivity 16 needed depth 512 (0.995, 9.6 ms):
  the same cost for the same recall, and 3x the build time.
- **Scanning every vector's 4-bit PQ code** (FAISS ``IndexPQFastScan``, 128 sub-quantisers: 64 bytes per 512-d
  vector) and re-ranking the best 1024 exactly: recall@5 1.0 at p50 13.6 ms (64 sub-quantisers: 0.996 at 8.9 ms),
  built in 7 s. An inverted file over the same codes (IVF1024, nprobe 32-128) missed too much (0.73-0.93). Through
  the gallery (``gallery_index.json``): recall@5 1.0, p50 12.3 ms, p99 22.7 ms, 1.38 GB.
- **Memory**: the float16 vectors plus the codes: the gallery's RSS grew 1.28 GB at 1M 512-d
  (``gallery_index.json``); usearch reported 1.33 GB for its float16 HNSW graph (``index_choice_1m.jsonl``).
- **Deletion** is one pass over the codes (FAISS ``remove_ids``); **enrolment** encodes the new vectors and appends.
- The scan is linear: about 10 ms per million 512-d vectors on one core here. Far beyond a few million, a graph
  (:class:`UsearchIndex`, its depth by size in :func:`search_depth_for`) is the alternative.

Earlier figures of the graph (sessions 6-7, ``gallery_index.json`` / ``gallery_index_1m.json``, under load):
128-d embeddings (the default model) are harder for it than 512-d (300k: recall@5 0.993 needed depth 2048); a
2-thread build is no worse than a 1-thread one at 50k; int8 vectors search at the speed of float16 ones on this
AVX2 CPU (quiet: 6.9 ms each at 100k, depth 256) but would need a second, float16 copy for exact re-scoring.

Only this module and :mod:`faceops.face.pq_scan` import an index library, so another one means one new
:class:`VectorIndex` class.
"""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Protocol, Self

import numpy as np

from faceops.errors import GalleryError
from faceops.face.pq_scan import PQScanIndex
from faceops.storage import atomic_path

__all__ = [
    "EXACT_BELOW",
    "PQScanIndex",
    "UsearchIndex",
    "VectorIndex",
    "build_index",
    "read_index",
    "search_depth_for",
    "timed_build",
    "write_index",
]

log = logging.getLogger(__name__)

EXACT_BELOW = 10_000
"""Galleries with fewer embeddings are searched exactly (a matrix product is fast and simplest there)."""

# Search depth (HNSW ef) by gallery size: (up to this many embeddings, depth). Recall@5 falls as the graph grows at a
# fixed depth (50k realistic embeddings: 0.948 / 0.983 / 0.996 at 96 / 192 / 384), so larger galleries search
# deeper; see search_depth_for.
DEPTH_BY_SIZE: tuple[tuple[int, int], ...] = ((20_000, 96), (60_000, 384), (150_000, 1024))
DEEPEST = 2048


def search_depth_for(size: int) -> int:
    """The default search depth for a gallery of ``size`` embeddings (measured for recall@5 >= 0.99:
    ``benchmarks/results/gallery_index_1m.json``)."""
    return next((depth for limit, depth in DEPTH_BY_SIZE if size <= limit), DEEPEST)


_CHUNK = 1 << 14
_PROGRESS_EVERY = 30.0  # seconds between progress lines of a long build


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

    def add(self, keys: np.ndarray, vectors: np.ndarray, threads: int = 1) -> None:
        """Insert ``vectors`` (N, D) under ``keys`` (N,): new non-negative integers, ascending and above every key
        added before (the gallery's slots are); ``threads``: insertion threads where the index builds a graph."""
        ...

    def remove(self, keys: np.ndarray) -> None:
        """Take ``keys`` out: no later search returns them."""
        ...

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """The keys of (about) the ``k`` nearest vectors of each query, best first: (Q, k), -1 where fewer."""
        ...

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        """The stored vectors of ``keys`` (all present), (len(keys), D), at float16 precision or better: the
        gallery keeps no other copy once it searches through the index, and re-scores candidates with these."""
        ...

    def save(self, path: Path) -> None: ...

    def copy(self) -> Self: ...


class UsearchIndex:
    """usearch's HNSW over float16 vectors (cosine): the gallery's only copy of its vectors once it uses the index.

    Args:
        index: a ``usearch.index.Index``; use :meth:`create` or :meth:`load`.
    """

    library: ClassVar[str] = "usearch"
    depth_for = staticmethod(search_depth_for)
    connectivity: ClassVar[int] = 16
    expansion_add: ClassVar[int] = 64
    expansion_search: ClassVar[int] = 96
    # Insertion threads: one by default (``threads`` of :meth:`add`). A graph built concurrently is worse, and by
    # how much depends on the core count (seeded 20k gallery, 300 probes: top-1 always right with one thread; with
    # 16 or 64 threads the probe's own identity was missed for 1 probe in 300 in some builds, which is how CI on a
    # many-core machine failed the recall test). One thread also makes the graph, hence the answers, the same on
    # every machine; more threads (a caller's explicit choice, e.g. for a large rebuild) give up that guarantee.

    def __init__(self, index: object) -> None:
        self._index = index

    @classmethod
    def create(cls, dim: int) -> UsearchIndex:
        from usearch.index import Index

        return cls(
            Index(
                ndim=dim,
                metric="cos",
                dtype="f16",
                connectivity=cls.connectivity,
                expansion_add=cls.expansion_add,
                expansion_search=cls.expansion_search,
            )
        )

    @classmethod
    def load(cls, path: Path) -> UsearchIndex:
        from usearch.index import Index, ScalarKind

        index = Index.restore(os.fspath(path))
        if index is None:
            raise GalleryError(f"{path}: not a usearch index")
        if index.dtype != ScalarKind.F16:  # e.g. an int8 index of an older FaceOps: not exact enough to re-score
            raise GalleryError(f"{path}: holds {index.dtype.name} vectors, not float16")
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

    def add(self, keys: np.ndarray, vectors: np.ndarray, threads: int = 1) -> None:
        self._index.add(  # type: ignore[attr-defined]
            np.asarray(keys, dtype=np.uint64),
            np.ascontiguousarray(vectors, dtype=np.float32),
            threads=max(1, threads),
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

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.uint64)
        if not len(keys):
            width = int(self._index.ndim)  # type: ignore[attr-defined]
            return np.zeros((0, width), dtype=np.float16)
        return np.stack(self._index.get(keys))  # type: ignore[attr-defined]  # one array per key

    def save(self, path: Path) -> None:
        self._index.save(os.fspath(path))  # type: ignore[attr-defined]

    def copy(self) -> UsearchIndex:
        duplicate = self._index.copy()  # type: ignore[attr-defined]
        duplicate.expansion_search = self.search_depth
        return UsearchIndex(duplicate)


def build_index(
    index_type: type[VectorIndex],
    keys: np.ndarray,
    vectors: np.ndarray,
    progress: Callable[[int, int], None] | None = None,
    threads: int = 1,
) -> VectorIndex:
    """A new index holding ``vectors`` (any float dtype, converted chunk by chunk) under ``keys``.

    Args:
        progress: called with (added so far, total) after each chunk.
        threads: insertion threads; one (the default) builds the same graph on every machine.
    """
    index = index_type.create(int(vectors.shape[1]))
    for start in range(0, len(keys), _CHUNK):
        stop = min(start + _CHUNK, len(keys))
        index.add(keys[start:stop], np.asarray(vectors[start:stop], dtype=np.float32), threads=threads)
        if progress:
            progress(stop, len(keys))
    return index


def write_index(index: VectorIndex, path: Path) -> dict[str, object]:
    """Save ``index`` atomically at ``path``; returns the stamp :func:`read_index` checks (library, size, CRC)."""
    with atomic_path(path) as tmp:
        index.save(tmp)
        crc, size = _crc32(tmp)
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
    index_type: type[VectorIndex], keys: np.ndarray, vectors: np.ndarray, why: str, threads: int = 1
) -> VectorIndex:
    """:func:`build_index` with log lines saying why, how far it is (every ``_PROGRESS_EVERY`` s) and how long."""
    start = time.perf_counter()
    last = start
    log.info("building the %s index of %d embeddings on %d thread(s) (%s)", index_type.library, len(keys),
             threads, why)

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last >= _PROGRESS_EVERY and done < total:
            last = now
            left = (now - start) * (total - done) / done
            log.info("index build: %d of %d embeddings in %.0f s, about %.0f s left", done, total, now - start, left)

    index = build_index(index_type, keys, vectors, progress, threads)
    log.info("%s index of %d embeddings built in %.1f s", index_type.library, len(keys), time.perf_counter() - start)
    return index
