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

Session 6 (``gallery_index.json``; the 2 cores were shared with other work at load averages of 20-35, so every
time is relative and only side-by-side figures compare):

- **Synthetic data**: the earlier 1M row (``data: dense``: recall@5 0.77, 0.91 at 4x depth; p50 1.5 ms; RSS
  +1.93 GB; connectivity 16 and expansion_add 64 too sparse for it) put 625 identities around each of 400 LFW
  embeddings. The benchmark now
  draws identities from a Gaussian fitted to real LFW embeddings (mean and covariance of person means, and of
  photos around them; ``--data fitted``, the default) and keeps the old data as the stress case ``--data dense``.
  At LFW's own shape (``data_realism``: a seeded random 1,024 of the 10,242 photos, 706 people, as many as the
  shared machine embedded in time) the fitted pairs match real ones (different people: cosine p5/p50/p95
  -0.17/0.06/0.27 against real -0.16/0.05/0.29; same person: 0.58/0.72/0.81 against 0.49/0.71/0.84), and each
  photo's nearest other person is a little less close than in real data (median 0.44 against 0.50: real faces
  have more look-alikes than a Gaussian), while the dense data's is far less close (0.25): its difficulty at 1M
  came from 625 near-copies per base, not from real faces being alike.
- **float16 vectors in the index** (one copy instead of int8 here plus float16 in the gallery, about 0.5 GB
  less at 1M): on this CPU (AVX2, no AVX-512 FP16) usearch builds and searches float16 2-3x slower than int8
  (``f16_vs_i8``), so a 1M build would take hours on 2 cores; not adopted.
- **Build threads**: :func:`build_index` and the gallery take an explicit thread count (one by default: the same
  graph everywhere, which ``tests/face/test_index.py`` checks); builds log their progress every 30 s.
- **Realistic data is harder for the graph, not for the answer**: at 50k fitted embeddings (12,500 identities;
  the probes' nearest other identity at cosine 0.53, median) the probe's own identity is always first, but the
  four runners-up are near-ties among strangers, and recall@5 is 0.948 at the default search depth 96, 0.983 at
  192 and 0.996 at 384 (p50 latencies under that load: 10, 13 and 20 ms; 2 ms for depth 96 measured earlier in
  the same run, so they mostly show the load). A 2-thread build: recall@5 0.943/0.982/0.997 at those depths
  against 0.948/0.983/0.996 with one thread (differences within 300 probes' noise), and no faster here (153 s
  against 120 s, both under load), so one thread stays the default.
- **1M** was not re-measured in this session: a 1M build is at least 15 core-minutes at these settings (more
  for realistic data), and the shared machine gave each process a fraction of a core. What bounds the targets:
  recall@5 0.99 needs about 4x the default search depth already at 50k, and more at 1M (not measured); memory
  is the int8 index plus the float16 copy (1.9 GB growth at 1M), which float16-in-the-index would cut by 0.5 GB
  at 2-3x the build and search time on AVX2.

Session 7 (``benchmarks/results/gallery_index_1m.json``, ``--model default``: the default model's 128-d
MobileFaceNet embeddings, the Gaussian fitted on the 6,152 LFW photos whose aligned crops were cached; load
averages 5-10 on the 2 cores, so times are relative):

- **128-d is harder for the graph than 512-d**: at 100k (25,000 identities) the probe's own identity is always
  first, but recall@5 is 0.784 at depth 96, 0.953 at 384, 0.974 at 512 and 0.987 at 768 (the four runners-up are
  near-ties among strangers at cosine ~0.43); at 300k (75,000 identities) 0.647 / 0.883 / 0.945 / 0.965 / 0.983 /
  0.993 at 96 / 384 / 768 / 1024 / 1536 / 2048 (p50 7 / 23 / 36 / 52 / 87 / 84 ms under load). So the default
  depth grows with the gallery (:func:`search_depth_for`): 96 up to 20k embeddings, 384 up to 60k, 1024 up to
  150k (interpolated, not measured there), 2048 above. 1M was not built (at the load of the shared machine it
  would have taken about an hour); at 2048 it will stay under 0.99 with this graph: the next step is a denser
  graph (connectivity 32, expansion_add 128: slower builds) measured side by side, since depth alone already
  costs 4x the 20 ms target at 300k.

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

__all__ = [
    "EXACT_BELOW",
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
        """Insert ``vectors`` (N, D) under ``keys`` (N,), new non-negative integers, on ``threads`` threads."""
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
