"""The gallery: enrolled identities with several embeddings each, stored without pickle, searched vectorised.

A gallery file is a NumPy ``.npz`` written with ``allow_pickle=False``: the (M, 512) embeddings, their identity
labels and source names as fixed-width unicode arrays, and a JSON header (format version, the model id that
produced the embeddings). Saves are atomic (a temporary file renamed over the old one), so a crash or a bad
enrolment never loses what was stored before.

Search is exact below :data:`~faceops.face.index.EXACT_BELOW` embeddings (float32, a matrix product: the results
are those of the plain exhaustive search). From that size on, an ANN index (:mod:`faceops.face.index`) holds the
vectors (float16: the gallery keeps no second copy) and proposes candidates, which are re-scored exactly against
their stored vectors and grouped per identity, so the scores keep their meaning (best cosine of an identity's
embeddings) and the threshold its calibration. Adds and deletions are incremental (amortised O(added)); a deleted
embedding is marked dead before it leaves the index, so a search that ends after :meth:`Gallery.remove` returned
never answers with it. Such a gallery also writes the index next to its file (``<file>.index``, its checksum in
the gallery header, plus a ``keys`` array) and reads it back at load; a missing, damaged or mismatched index file
is rebuilt from the embeddings and said in the log. Files stay readable by older FaceOps versions.

A gallery that lives in a file changes in place and durably without rewriting it: ``add(..., journal=path)`` and
``remove(..., journal=path)`` append the change to the file's journal (:mod:`faceops.face.gallery_file`) before
making it, :meth:`Gallery.load` replays the journal, and :meth:`Gallery.save` (a compaction) starts a new one.
"""

from __future__ import annotations

import bisect
import copy
import json
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceops.errors import GalleryError, UnknownIdentity
from faceops.face.gallery_file import (
    FORMAT_VERSION,
    JournalRecord,
    append_journal,
    index_path,
    journal_path,
    read_gallery_file,
    read_journal,
    write_gallery_file,
)
from faceops.face.index import (
    EXACT_BELOW,
    PQScanIndex,
    VectorIndex,
    read_index,
    timed_build,
    write_index,
)

__all__ = ["Gallery", "Match", "UNKNOWN", "valid_identity"]

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
_RACES = 3  # searches whose answer named an identity removed meanwhile, before one runs holding the lock
_CANDIDATES = 64  # ANN candidates re-scored per query (more when they hold fewer than top_k identities)
_SCAN_CHUNK = 1 << 16
_BULK = 1 << 12  # batches of this many embeddings or more are inserted on build_threads threads


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

    Safe for concurrent :meth:`identify` calls while one writer adds or removes (an internal lock orders them).

    Args:
        model_id: the embedder that made (and must keep making) the embeddings; mixing models is refused.
        exact_below: below this many embeddings search is exact; from it on, through the ANN index.
        index_type: the :class:`~faceops.face.index.VectorIndex` implementation for large galleries.
        build_threads: threads for building the whole index (at the switch to ANN search, or when a load rebuilds
            it), for index types that build a graph (:class:`~faceops.face.index.UsearchIndex`: one, the default,
            builds the same graph on every machine).
        search_depth: the index's search depth (the default index: candidates re-ranked exactly; HNSW: ef);
            None (the default) lets the index choose it by the gallery's size (its ``depth_for``), so recall@5
            stays >= 0.99 as the gallery grows.
    """

    def __init__(
        self,
        model_id: str,
        *,
        exact_below: int = EXACT_BELOW,
        index_type: type[VectorIndex] = PQScanIndex,
        build_threads: int = 1,
        search_depth: int | None = None,
    ) -> None:
        self.model_id = model_id
        self.exact_below = exact_below
        self.index_type = index_type
        self.build_threads = max(1, int(build_threads))
        self.search_depth = search_depth
        self._lock = threading.RLock()
        self._writer = threading.RLock()  # journalled changes and saves, one at a time (searches do not take it)
        self._base: str | None = None  # the id of the file this gallery was last loaded from or saved to
        self._file: Path | None = None
        self.journal_bytes = 0  # appended to that file's journal since (a caller compacts when it is large)
        self._reset()

    def _reset(self) -> None:
        # Slots: rows of _store/_codes/_sources in order of addition. Exact mode keeps them dense (a removal
        # compacts); ANN mode marks removed slots dead (code -1), as the slot number is the key in the index, and
        # its _store has no rows (it only keeps the width): the index holds the vectors.
        self._store = np.zeros((0, 0), dtype=np.float32)
        self._codes = np.zeros(0, dtype=np.int32)
        self._sources: list[str] = []
        self._used = 0
        self._names: list[str] = []
        self._code_of: dict[str, int] = {}
        self._counts = np.zeros(0, dtype=np.int64)
        self._live = 0
        self._index: VectorIndex | None = None
        self._exact_view: tuple[np.ndarray, np.ndarray, list[str], np.ndarray] | None = None
        self._identities_view: dict[str, int] | None = None  # cached, like _exact_view, until the next change

    # -- contents -----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._live

    def __contains__(self, identity: object) -> bool:
        """Whether ``identity`` has embeddings (O(1): no copy of :attr:`identities`)."""
        return self.count(identity) > 0 if isinstance(identity, str) else False

    def count(self, identity: str) -> int:
        """How many embeddings ``identity`` has (0 if not enrolled)."""
        with self._lock:
            code = self._code_of.get(identity)
            return 0 if code is None else int(self._counts[code])

    @property
    def identity_count(self) -> int:
        """The number of enrolled identities (without building :attr:`identities`)."""
        with self._lock:
            return int(np.count_nonzero(self._counts))

    @property
    def identities(self) -> dict[str, int]:
        """Identity -> number of embeddings, sorted by name."""
        with self._lock:
            if self._identities_view is None:
                counts = self._counts
                self._identities_view = {
                    self._names[c]: int(counts[c]) for c in sorted(np.flatnonzero(counts), key=self._names.__getitem__)
                }
            return dict(self._identities_view)

    @property
    def file(self) -> Path | None:
        """The file this gallery was last loaded from or saved to (the one its journalled changes continue)."""
        return self._file

    @property
    def uses_index(self) -> bool:
        """Whether search goes through the ANN index (the gallery reached ``exact_below`` embeddings)."""
        return self._index is not None

    @property
    def index(self) -> VectorIndex | None:
        """The ANN index (None while the search is exact); e.g. to tune its search depth."""
        return self._index

    def sources(self, identity: str) -> list[str]:
        """The source names of an identity's embeddings, in enrolment order (a lookup in the cached sorted view,
        so asking for each of 250k identities of a million-embedding gallery takes seconds, not hours)."""
        with self._lock:
            self._require(identity)
            _, starts, names, slots = self._exact()
            i = bisect.bisect_left(names, identity)
            stop = int(starts[i + 1]) if i + 1 < len(starts) else len(slots)
            return [self._sources[s] for s in slots[int(starts[i]) : stop].tolist()]

    def sources_of(self, identity: str) -> list[str]:
        """:meth:`sources` by a scan of the slots (O(embeddings), no sorted view to rebuild after a change): for a
        few identities of a gallery that changes between the calls; :meth:`sources` or :meth:`labelled_sources`
        for many."""
        with self._lock:
            self._require(identity)
            rows = np.flatnonzero(self._codes[: self._used] == self._code_of[identity])
            return [self._sources[s] for s in rows.tolist()]

    def labelled_sources(self) -> list[tuple[str, str]]:
        """``(identity, source)`` of every embedding, in slot order (one pass)."""
        with self._lock:
            slots = np.flatnonzero(self._codes[: self._used] >= 0)
            names, codes = self._names, self._codes
            return [(names[codes[s]], self._sources[s]) for s in slots.tolist()]

    def embeddings_of(self, identity: str) -> np.ndarray:
        """The stored (unit) embeddings of one identity, float32 (k, dim), in enrolment order.

        Raises:
            UnknownIdentity: when ``identity`` has no embeddings in the gallery.
        """
        with self._lock:
            self._require(identity)
            rows = np.flatnonzero(self._codes[: self._used] == self._code_of[identity])
            return np.asarray(self._vectors(rows), dtype=np.float32)

    def add(
        self, identity: str, embeddings: np.ndarray, sources: list[str] | None = None, *, journal: Path | None = None
    ) -> None:
        """Enrol more embeddings for an identity (new or existing).

        Args:
            journal: the gallery's file: the change is appended to its journal (fsync) before it is made, so it
                survives a crash once this returns. A gallery not loaded from or saved to that file is saved
                there first.
        """
        identity = valid_identity(identity)
        vectors = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if journal is None:
            self.add_batch([identity] * len(vectors), vectors, sources)
            return
        with self._writer:
            self._check_batch([identity] * len(vectors), vectors, sources)
            self._journal(journal, JournalRecord("add", identity, vectors, tuple(sources or [""] * len(vectors))))
            self.add_batch([identity] * len(vectors), vectors, sources)

    def add_batch(
        self, identities: Sequence[str], embeddings: np.ndarray, sources: Sequence[str] | None = None
    ) -> None:
        """Enrol many embeddings at once, one identity name per row (e.g. loading a stored gallery).

        One validation and one index insertion for the whole batch, so a million rows load in index-build time.
        """
        vectors = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        if len(vectors) == 0:
            return
        names = self._check_batch(identities, vectors, sources)
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        sources = list(sources) if sources else [""] * len(vectors)
        with self._lock:
            if not len(self):
                self._reset()
            for name in names:
                if name not in self._code_of:
                    self._code_of[name] = len(self._names)
                    self._names.append(name)
            if len(self._counts) < len(self._names):
                self._counts = np.concatenate([self._counts, np.zeros(len(self._names) - len(self._counts), np.int64)])
            lookup = {raw: self._code_of[raw.strip()] for raw in dict.fromkeys(identities)}
            codes = np.fromiter((lookup[i] for i in identities), dtype=np.int32, count=len(vectors))
            keys = self._append(vectors, codes, [str(s) for s in sources])
            self._counts += np.bincount(codes, minlength=len(self._counts))
            self._live += len(vectors)
            self._exact_view = self._identities_view = None
            if self._index is not None:  # a large batch (a bulk load) is a build: build_threads insert it
                self._index.add(keys, vectors, threads=self.build_threads if len(keys) >= _BULK else 1)
            elif self._live >= self.exact_below:
                self._start_index()
            self._tune_depth()

    def _tune_depth(self) -> None:
        """The index's search depth for this size (the index type's ``depth_for``), unless the gallery was given a
        fixed ``search_depth``."""
        if self._index is not None and hasattr(self._index, "search_depth"):
            depth = self.search_depth or self._index.depth_for(self._live)  # type: ignore[attr-defined]
            if self._index.search_depth != depth:
                self._index.search_depth = depth

    def _check_batch(self, identities: Sequence[str], vectors: np.ndarray, sources: Sequence[str] | None) -> list[str]:
        """The distinct valid names of a batch; :class:`GalleryError` for what :meth:`add_batch` cannot take."""
        if len(self) and vectors.shape[1] != self.dim:
            raise GalleryError(f"embedding size {vectors.shape[1]} does not match the gallery's {self.dim}")
        if not np.all(np.isfinite(vectors)):
            raise GalleryError("embeddings contain NaN or infinite values")
        if len(identities) != len(vectors):
            raise GalleryError(f"one identity per embedding is needed ({len(identities)} for {len(vectors)})")
        if sources and len(sources) != len(vectors):
            raise GalleryError("one source name per embedding is needed")
        return [valid_identity(i) for i in dict.fromkeys(identities)]  # validate each distinct name once

    def _journal(self, path: Path, record: JournalRecord) -> None:
        """Append ``record`` to the journal of the file at ``path`` (saving the gallery there first if it is not
        this gallery's file)."""
        path = Path(path)
        if self._base is None or self._file != path:
            self.save(path)
        assert self._base is not None  # set by save
        self.journal_bytes = append_journal(path, self._base, record)

    def remove(self, identity: str, *, journal: Path | None = None) -> int:
        """Delete every embedding of an identity; returns how many were removed.

        Args:
            journal: as for :meth:`add`: the deletion is durable once this returns.
        """
        with self._writer, self._lock:
            self._require(identity)
            if journal is not None:
                self._journal(journal, JournalRecord("remove", identity))
            code = self._code_of[identity]
            rows = np.flatnonzero(self._codes[: self._used] == code)
            if self._index is None:
                keep = np.ones(self._used, dtype=bool)
                keep[rows] = False
                self._store = self._store[: self._used][keep]
                self._codes = self._codes[: self._used][keep]
                self._sources = [s for s, k in zip(self._sources, keep.tolist(), strict=True) if k]
                self._used = len(self._codes)
            else:
                self._codes[rows] = -1  # dead before it leaves the index: searches drop it from here on
                self._index.remove(rows)
                for i in rows.tolist():
                    self._sources[i] = ""
            self._counts[code] = 0
            self._live -= len(rows)
            self._exact_view = self._identities_view = None
            return len(rows)

    @property
    def dim(self) -> int:
        return int(self._store.shape[1]) if len(self) else 0

    def _append(self, vectors: np.ndarray, codes: np.ndarray, sources: list[str]) -> np.ndarray:
        """Write the rows into free slots (growing the buffers by half when full); returns the slots."""
        need = self._used + len(vectors)
        exact = self._index is None  # else the index takes the vectors (the caller adds them)
        if need > len(self._codes) or (exact and self._store.shape[1] != vectors.shape[1]):
            capacity = max(need, len(self._codes) * 3 // 2, 16)
            if exact:
                store = np.zeros((capacity, vectors.shape[1]), dtype=np.float32)
                if self._used:
                    store[: self._used] = self._store[: self._used]
                self._store = store
            grown = np.full(capacity, -1, dtype=np.int32)
            grown[: self._used] = self._codes[: self._used]
            self._codes = grown
        keys = np.arange(self._used, need)
        if exact:
            self._store[keys] = vectors
        self._codes[keys] = codes
        self._sources += sources
        self._used = need
        return keys

    def _start_index(self) -> None:
        """Switch to ANN search: an index over every slot (all live: exact mode is dense) that takes the vectors."""
        vectors = self._store[: self._used]
        self._codes = self._codes[: self._used].copy()
        keys = np.arange(self._used)
        self._index = timed_build(
            self.index_type, keys, vectors, f"the gallery reached {self._live} embeddings", self.build_threads
        )
        self._store = np.zeros((0, vectors.shape[1]), dtype=np.float16)

    def _vectors(self, slots: np.ndarray) -> np.ndarray:
        """The stored vectors of live ``slots``: rows of the exact store, or the index's (float16), gathered in
        chunks. Call under the lock."""
        if self._index is None:
            return self._store[slots]
        out = np.empty((len(slots), self._store.shape[1]), dtype=np.float16)
        for start in range(0, len(slots), _SCAN_CHUNK):
            out[start : start + _SCAN_CHUNK] = self._index.vectors(slots[start : start + _SCAN_CHUNK])
        return out

    # -- search -------------------------------------------------------------------------------------------------
    def scores(self, queries: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, list[str]]:
        """Cosine score of each query against each identity (the best of its embeddings): (Q, I) and the names.

        Always exhaustive (every embedding is scored), also when :meth:`identify` uses the index.
        """
        queries = self._queries(queries)
        with self._lock:
            embeddings, starts, names, _ = self._exact()
        if self._index is None:
            sims = queries @ embeddings.T
            return np.maximum.reduceat(sims, starts, axis=1), names
        out = np.full((len(queries), len(names)), -np.inf, dtype=np.float32)
        rank = self._name_ranks(names)
        with self._lock:
            used = self._used  # later slots hold identities added after `names`
        for start in range(0, used, _SCAN_CHUNK):
            with self._lock:  # codes and index agree under the lock (a removal changes both)
                chunk = self._codes[start : min(start + _SCAN_CHUNK, used)].copy()
                live = np.flatnonzero(chunk >= 0)
                vectors = self._vectors(start + live)
            sims = queries @ vectors.astype(np.float32).T
            for q in range(len(queries)):
                np.maximum.at(out[q], rank[chunk[live]], sims[q])
        return out, names

    def identify(
        self, queries: np.ndarray | Sequence[np.ndarray], threshold: float, top_k: int = 3
    ) -> list[Match]:
        """The best identities for each query; ``unknown`` when the best score is below ``threshold``.

        The gallery may change while this runs (another thread adds or removes): an answer naming an identity that
        was removed meanwhile is computed again, so no search that returns after :meth:`remove` returned names it.
        After :data:`_RACES` such answers the search runs once more holding the gallery's lock (removals wait for
        it), so a stream of removals cannot keep it going.
        """
        for _ in range(_RACES):
            matches = self._identify(queries, threshold, top_k)
            with self._lock:
                if all(name in self for m in matches for name, _ in m.candidates):
                    return matches
        with self._lock:
            return self._identify(queries, threshold, top_k)

    def _identify(self, queries: np.ndarray | Sequence[np.ndarray], threshold: float, top_k: int) -> list[Match]:
        if self._index is not None:
            return self._identify_ann(self._queries(queries), threshold, top_k)
        per_identity, names = self.scores(queries)
        k = min(top_k, len(names))
        order = np.argsort(-per_identity, axis=1)[:, :k]
        matches = []
        for row, ranks in zip(per_identity, order, strict=True):
            candidates = tuple((names[i], float(row[i])) for i in ranks)
            best_name, best = candidates[0]
            matches.append(Match(best_name if best >= threshold else UNKNOWN, best, candidates))
        return matches

    def _queries(self, queries: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        if len(self) == 0:
            raise GalleryError("the gallery is empty: enrol identities first")
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise GalleryError(f"query embedding size {queries.shape[1]} does not match the gallery's {self.dim}")
        return queries

    def _identify_ann(self, queries: np.ndarray, threshold: float, top_k: int) -> list[Match]:
        """Candidates from the index, re-scored exactly and grouped: each identity's best retrieved embedding."""
        matches = []
        for query in queries:
            want = max(_CANDIDATES, 4 * top_k)
            while True:
                with self._lock:
                    keys = self._index.search(query, want)[0] if self._index is not None else np.zeros(0, int)
                    codes, live, identities = self._codes, self._live, int(np.count_nonzero(self._counts))
                    keys = keys[keys >= 0]
                    keys = keys[codes[keys] >= 0]
                    vectors = self._vectors(keys)
                sims = vectors.astype(np.float32) @ query
                order = np.argsort(-sims, kind="stable")
                ranked = codes[keys][order]
                _, first = np.unique(ranked, return_index=True)
                first.sort()
                if len(first) >= min(top_k, identities) or want >= live:
                    break
                want = min(want * 4, live)
            candidates = tuple((self._names[ranked[i]], float(sims[order[i]])) for i in first[:top_k])
            if not candidates:
                raise GalleryError("the gallery is empty: enrol identities first")
            best_name, best = candidates[0]
            matches.append(Match(best_name if best >= threshold else UNKNOWN, best, candidates))
        return matches

    def _exact(self) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
        """Live embeddings sorted by label (stable), run starts, sorted names, and their slots (cached)."""
        if self._exact_view is None:
            slots = np.flatnonzero(self._codes[: self._used] >= 0)
            labels = np.asarray(self._names)[self._codes[slots]] if len(slots) else np.zeros(0, dtype=str)
            order = np.argsort(labels, kind="stable")
            slots = slots[order]
            names, starts = np.unique(labels[order], return_index=True)
            embeddings = self._store[slots] if self._index is None else self._store[:0]
            self._exact_view = (embeddings, starts, [str(n) for n in names], slots)
        return self._exact_view

    def _name_ranks(self, names: list[str]) -> np.ndarray:
        rank = np.zeros(len(self._names), dtype=np.int64)
        for i, name in enumerate(names):
            rank[self._code_of[name]] = i
        return rank

    # -- storage ------------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write atomically: the old file stays intact until the new one is complete.

        A gallery searched through the index also writes the index to ``<path>.index`` (first, so a crash in
        between leaves a checksum mismatch, which the next load repairs by rebuilding).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._writer:  # journalled changes wait: one made meanwhile would follow the old file, and go with it
            self._save(path)

    def _save(self, path: Path) -> None:
        with self._lock:
            base = uuid.uuid4().hex
            header: dict[str, object] = {"format": FORMAT_VERSION, "model_id": self.model_id, "base": base}
            arrays: dict[str, np.ndarray] = {}
            if self._index is None:
                slots = self._exact()[3]  # sorted by label, as files have always been
            else:
                slots = np.flatnonzero(self._codes[: self._used] >= 0)  # slot order: the keys stay ascending
                header["index"] = write_index(self._index, index_path(path))
                arrays["keys"] = slots.astype(np.int64)
            embeddings = self._vectors(slots)
            labels = np.asarray(self._names)[self._codes[slots]] if len(slots) else np.zeros(0, dtype=str)
            sources = np.asarray([self._sources[i] for i in slots.tolist()], dtype=str)
        arrays |= {
            "header": np.array(json.dumps(header)),
            "embeddings": embeddings if len(slots) else np.zeros((0, 0), dtype=np.float32),
            "labels": labels.astype(str),
            "sources": sources.astype(str),
        }
        write_gallery_file(path, arrays)  # outside the search lock: searches go on while a large gallery is written
        journal_path(path).unlink(missing_ok=True)  # what it held is in the file now
        self._base, self._file, self.journal_bytes = base, path, 0

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        exact_below: int = EXACT_BELOW,
        index_type: type[VectorIndex] = PQScanIndex,
        build_threads: int = 1,
    ) -> Gallery:
        """Read a gallery written by :meth:`save` (and its index file, when it is large enough to use one).

        Raises:
            GalleryError: naming the file, when it is missing, not a ``.npz`` archive (empty, truncated,
                garbage), holds pickled objects, or lacks or mangles the gallery's arrays. A bad index file is
                not an error: it is rebuilt from the embeddings (a warning in the log says why).
        """
        path = Path(path)
        gallery = cls._load_file(path, exact_below, index_type, build_threads)
        base = gallery._base
        replayed = 0
        for record in read_journal(path, base):
            if record.op == "add" and record.embeddings is not None:
                gallery.add_batch([record.identity] * len(record.embeddings), record.embeddings, list(record.sources))
            elif record.identity in gallery:
                gallery.remove(record.identity)
            replayed += 1
        if replayed:
            log.info("%s: %d change(s) replayed from its journal", path, replayed)
        journal = journal_path(path)
        gallery._base, gallery._file = base, path
        gallery.journal_bytes = journal.stat().st_size if base is not None and journal.is_file() else 0
        return gallery

    @classmethod
    def _load_file(
        cls, path: Path, exact_below: int, index_type: type[VectorIndex], build_threads: int
    ) -> Gallery:
        header, _, labels, sources, keys = read_gallery_file(path, with_embeddings=False)  # read when needed
        gallery = cls(header["model_id"], exact_below=exact_below, index_type=index_type, build_threads=build_threads)
        base = header.get("base")
        gallery._base = base if isinstance(base, str) else None
        if not len(labels):
            return gallery
        names, codes = np.unique(labels.astype(str), return_inverse=True)
        gallery._names = [str(n) for n in names]
        gallery._code_of = {n: i for i, n in enumerate(gallery._names)}
        gallery._counts = np.bincount(codes, minlength=len(names)).astype(np.int64)
        gallery._live = len(labels)
        if len(labels) < exact_below:
            order = np.argsort(labels, kind="stable")  # the order the exact search has always used
            gallery._store = _embeddings_in(path, header).astype(np.float32)[order]
            gallery._codes, gallery._sources = codes.astype(np.int32)[order], sources.astype(str)[order].tolist()
            gallery._used = len(labels)
            return gallery
        gallery._load_indexed(path, header, keys, codes.astype(np.int32), sources)
        return gallery

    def _load_indexed(
        self, path: Path, header: dict, keys: np.ndarray | None, codes: np.ndarray, sources: np.ndarray
    ) -> None:
        """Slots as saved and the index (with the vectors) from its file when both check out; else dense slots and
        a new index of the file's embeddings."""
        stamp = header.get("index")
        count = len(codes)
        index: VectorIndex | None = None
        try:
            if keys is None:
                raise GalleryError(f"{path}: no keys array for an index")
            if keys.shape != (count,) or keys.dtype.kind not in "iu" or (count and (keys.min() < 0 or np.any(np.diff(keys) <= 0))):
                raise GalleryError(f"{path}: the keys array is not {count} ascending non-negative integers")
            index = read_index(self.index_type, index_path(path), stamp, count)
        except GalleryError as exc:
            log.warning("the gallery's index is not usable (%s): rebuilding it from the %d embeddings", exc, count)
            keys = None
        slots = np.arange(count) if keys is None else keys.astype(np.int64)
        size = int(slots[-1]) + 1
        self._codes = np.full(size, -1, dtype=np.int32)
        self._codes[slots] = codes
        self._sources = [""] * size
        for slot, source in zip(slots.tolist(), sources.tolist(), strict=True):
            self._sources[slot] = source
        self._used = size
        if index is None:
            embeddings = _embeddings_in(path, header)
            index = timed_build(self.index_type, slots, embeddings, f"loading {path}", self.build_threads)
        self._index = index
        width = index.vectors(slots[:1]).shape[1]
        self._store = np.zeros((0, width), dtype=np.float16)  # the index holds the vectors
        self._tune_depth()

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
        code = self._code_of.get(identity)
        if code is None or not self._counts[code]:
            raise UnknownIdentity(f"identity {identity!r} is not enrolled")

    def __deepcopy__(self, memo: dict[int, object]) -> Gallery:
        """An independent copy (the index too), e.g. for copy-on-write updates."""
        with self._lock:
            twin = Gallery(
                self.model_id, exact_below=self.exact_below, index_type=self.index_type, build_threads=self.build_threads
            )
            skip = ("_lock", "_writer", "_index", "_exact_view", "_identities_view", "_base", "_file", "journal_bytes")
            state = {k: v for k, v in self.__dict__.items() if k not in skip}
            twin.__dict__.update(copy.deepcopy(state, memo))  # not tied to a file: a journal needs a save first
            twin._index = self._index.copy() if self._index is not None else None
            return twin


def _embeddings_in(path: Path, header: dict) -> np.ndarray:
    """The embeddings of the gallery file at ``path``, whose header was read before (it must not have changed)."""
    again, embeddings, *_ = read_gallery_file(path)
    if again.get("base") != header.get("base") or embeddings is None:
        raise GalleryError(f"{path} was replaced while it was being loaded: load it again")
    return embeddings
