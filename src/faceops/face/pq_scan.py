"""The gallery's default vector index: every vector scanned by 4-bit product-quantisation codes, the best
candidates re-ranked exactly.

FAISS's fast-scan PQ (``IndexPQFastScan``: a 4-bit code per 4 dimensions, 64 bytes for a 512-d vector) scores
the whole gallery in registers with SIMD lookups, and the ``search_depth`` best candidates are re-ranked with the
float16 vectors this index also keeps (the gallery's only copy once it uses an index). The scan is linear in the
gallery size but small and fast: at 1M 512-d embeddings recall@5 1.0 against exact search at depth 1024, p50
13.6 ms on one core of the 2-core development machine (12.3 ms through the gallery), where usearch's HNSW graph
reached 0.988 at depth 2048 and 56 ms (``benchmarks/results/index_choice_1m.jsonl``). 128-d embeddings (the
default model) need a code per 2 dimensions (32 bytes): with one per 4, recall@5 was 0.92 at depth 1024; with one
per 2, 0.999 at 6.9 ms (same file). Building is encoding (seconds for a million vectors, after training the
codebooks on the first batch). A deletion marks the vector dead (a search skips it at once); the dead codes leave
in one batch when they reach a sixteenth of the index, since FAISS's removal repacks every code after the first
one removed (a one-off check on 1M random 512-d vectors: 1.6 s for one early vector, 1.2 s for a batch of
2,855; the gallery benchmark's first 1M run, before tombstones, measured deletion p50 1.29 s, a run whose result
file was replaced by the one after the fix).

Until :data:`TRAIN_AT` vectors are stored there is nothing to train codebooks on: such a small index scans its
float16 vectors exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from faceops.errors import GalleryError

__all__ = ["DEPTH_BY_SIZE", "PQScanIndex", "TRAIN_AT"]

TRAIN_AT = 1024
"""Vectors needed to train the codebooks (16 centroids per 4-dimensional subspace); fewer are scanned exactly."""
_TRAIN_MAX = 65_536  # training sample: the first vectors added, up to this many
# Candidates re-ranked exactly, by gallery size: (up to this many vectors, depth). Measured recall@5 (fitted 512-d
# galleries, gallery_index.json): 10k 1.0 from depth 96; 100k 0.996 at 96, 1.0 from 192; 1M 0.9987 at 384, 1.0 from
# 768 (128-d, gallery_index_1m.json: 0.998 at 384, 0.9993 from 768). About twice the depth where recall@5 reached
# 1.0; re-ranking 1024 instead of 192 costs about 2 ms a query at 10k (0.58 against 2.73 ms in the 10k sweep).
DEPTH_BY_SIZE: tuple[tuple[int, int], ...] = ((30_000, 192), (300_000, 512))
_DEFAULT_DEPTH = 1024
_COMPACT_FRACTION = 16  # dead codes leave when they are this fraction of the index
_FORMAT = 3  # 3: the vectors block by block, as they lie in memory (a row per key, zeros where removed)
_SHIFT = 16
_BLOCK = 1 << _SHIFT  # rows of a block of the float16 store


class _Rows:
    """Float16 rows by key in blocks of fixed size: growing a million-row store never copies it (nor doubles its
    memory for a moment, as growing one array by half did: in a one-off check, resizing a 1M x 512 float16 array to
    1.5M took 1.5 s and peaked at 2 GB)."""

    def __init__(self, dim: int, blocks: list[np.ndarray] | None = None) -> None:
        self.dim = dim
        self.blocks = blocks or []

    def _groups(self, keys: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(block, which of ``keys``, their rows in it) for each block the keys fall in."""
        which = keys >> _SHIFT
        return [(self.blocks[b], mask, keys[mask] & (_BLOCK - 1))
                for b in np.unique(which).tolist() for mask in [which == b]]

    def put(self, keys: np.ndarray, vectors: np.ndarray | float) -> None:
        if len(keys):
            while len(self.blocks) << _SHIFT <= int(keys.max()):
                self.blocks.append(np.zeros((_BLOCK, self.dim), dtype=np.float16))  # pages are taken when written
        for block, mask, rows in self._groups(keys):
            block[rows] = vectors[mask] if isinstance(vectors, np.ndarray) else vectors

    def get(self, keys: np.ndarray) -> np.ndarray:
        out = np.empty((len(keys), self.dim), dtype=np.float16)
        for block, mask, rows in self._groups(keys):
            out[mask] = block[rows]
        return out

    def copy(self) -> _Rows:
        return _Rows(self.dim, [block.copy() for block in self.blocks])


class PQScanIndex:
    """4-bit PQ fast scan over every vector, then exact (float16) re-ranking of the best ``search_depth``.

    Keys must be added in ascending order (the gallery's slots are), so a key's position is a binary search.

    Args:
        dim: vector size: one 4-bit code per 4 dimensions from 256-d on (512-d: 64 bytes), per 2 below (128-d: 32
            bytes); per 2 or 1 where the size does not divide.
    """

    library: ClassVar[str] = "faiss-pq-fastscan"

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._pq: Any = None  # a trained faiss.IndexPQFastScan: position i holds self._keys[i]
        self._keys = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)  # per position: False once removed (its code leaves at compaction)
        self._dead = 0
        self._rows = _Rows(dim)  # the vector of each key (zeros where keys were removed)
        self.search_depth = _DEFAULT_DEPTH

    @staticmethod
    def depth_for(size: int) -> int:
        """The default search depth (candidates re-ranked exactly) for a gallery of ``size`` vectors."""
        return next((depth for limit, depth in DEPTH_BY_SIZE if size <= limit), _DEFAULT_DEPTH)

    @classmethod
    def create(cls, dim: int) -> Self:
        return cls(dim)

    def __len__(self) -> int:
        return len(self._keys) - self._dead

    def _new_pq(self) -> Any:
        import faiss

        # 4 dimensions a code from 256-d on, 2 below (128-d with 4: recall@5 0.92 at depth 1024 on 1M; with 2: 0.999)
        sub = next(s for s in ((4, 2, 1) if self._dim >= 256 else (2, 1)) if self._dim % s == 0)
        return faiss.IndexPQFastScan(self._dim, self._dim // sub, 4, faiss.METRIC_INNER_PRODUCT)

    def add(self, keys: np.ndarray, vectors: np.ndarray, threads: int = 1) -> None:  # noqa: ARG002  # FAISS's own threads
        keys = np.asarray(keys, dtype=np.int64)
        if not len(keys):
            return
        if np.any(np.diff(keys) <= 0) or (len(self._keys) and keys[0] <= self._keys[-1]) or keys[0] < 0:
            raise ValueError("keys must be new, non-negative and ascending")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._rows.put(keys, vectors)
        self._keys = np.concatenate([self._keys, keys])
        self._alive = np.concatenate([self._alive, np.ones(len(keys), dtype=bool)])
        if self._pq is not None:
            self._pq.add(vectors)
        elif len(self._keys) >= TRAIN_AT:
            self._pq = self._new_pq()
            self._pq.train(self._rows.get(self._keys[:_TRAIN_MAX]).astype(np.float32))
            for start in range(0, len(self._keys), _TRAIN_MAX):
                self._pq.add(self._rows.get(self._keys[start : start + _TRAIN_MAX]).astype(np.float32))

    def remove(self, keys: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        positions = np.searchsorted(self._keys, keys)
        present = positions < len(self._keys)
        present[present] = self._keys[positions[present]] == keys[present]
        positions = positions[present]
        positions = positions[self._alive[positions]]
        if not len(positions):
            return
        self._rows.put(self._keys[positions], 0.0)
        if self._pq is None:  # nothing encoded yet: the arrays are all there is
            self._keys, self._alive = np.delete(self._keys, positions), np.delete(self._alive, positions)
            return
        self._alive[positions] = False
        self._dead += len(positions)
        if self._dead * _COMPACT_FRACTION >= len(self._keys):
            self._compact()

    def _compact(self) -> None:
        """Drop the dead codes in one pass (FAISS repacks every code after the first one removed)."""
        import faiss

        dead = np.flatnonzero(~self._alive)
        self._pq.remove_ids(faiss.IDSelectorBatch(dead.astype(np.int64)))
        self._keys, self._alive, self._dead = self._keys[self._alive], self._alive[self._alive], 0

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        out = np.full((len(queries), k), -1, dtype=np.int64)
        if not len(self):
            return out
        if self._pq is None:
            candidates = np.broadcast_to(self._keys, (len(queries), len(self._keys)))
        else:
            want = max(k, self.search_depth)
            # dead codes still take places in the scan's ranking: ask for as many more, or for every code once
            # the caller wants every live vector
            fetch = len(self._keys) if k >= len(self) else min(len(self._keys), want + min(self._dead, want))
            _, positions = self._pq.search(queries, fetch)
            usable = (positions >= 0) & self._alive[positions.clip(min=0)]
            candidates = np.where(usable, self._keys[positions.clip(min=0)], -1)
        for row, (query, found) in enumerate(zip(queries, candidates, strict=True)):
            found = found[found >= 0]
            sims = self._rows.get(found).astype(np.float32) @ query
            best = np.argsort(-sims, kind="stable")[:k]
            out[row, : len(best)] = found[best]
        return out

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        return self._rows.get(np.asarray(keys, dtype=np.int64))

    def save(self, path: Path) -> None:
        import faiss

        if self._dead:  # the file holds live keys only, so the keys of a loaded index are the gallery's slots
            self._compact()
        rows = int(self._keys[-1]) + 1 if len(self._keys) else 0
        blocks = [block[: rows - (i << _SHIFT)] for i, block in enumerate(self._rows.blocks[: -(-rows >> _SHIFT)])]
        header = {"format": _FORMAT, "library": self.library, "dim": self._dim, "trained": self._pq is not None,
                  "blocks": len(blocks)}
        codes = faiss.serialize_index(self._pq) if self._pq is not None else np.zeros(0, dtype=np.uint8)
        arrays: dict[str, Any] = {"header": np.array(json.dumps(header)), "keys": self._keys, "alive": self._alive,
                                  "codes": codes} | {f"vectors_{i:05d}": block for i, block in enumerate(blocks)}
        with open(path, "wb") as handle:  # a member per block: written as they are, read back as the blocks
            np.savez(handle, **arrays)

    @classmethod
    def load(cls, path: Path) -> Self:
        import faiss

        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                if header.get("library") != cls.library or header.get("format") != _FORMAT:
                    raise GalleryError(f"{path}: not a {cls.library} index of format {_FORMAT}")
                keys, alive, codes = data["keys"], data["alive"], data["codes"]
                blocks = [data[f"vectors_{i:05d}"] for i in range(int(header["blocks"]))]
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise GalleryError(f"{path}: not a {cls.library} index ({type(exc).__name__}: {exc})") from exc
        index = cls(int(header["dim"]))
        index._keys, index._alive = keys.astype(np.int64), alive.astype(bool)
        index._dead = int(np.count_nonzero(~index._alive))
        rows = int(keys[-1]) + 1 if len(keys) else 0
        sizes = [min(_BLOCK, rows - (i << _SHIFT)) for i in range(-(-rows >> _SHIFT))]
        if [b.shape for b in blocks] != [(n, index._dim) for n in sizes] or any(b.dtype != np.float16 for b in blocks):
            raise GalleryError(f"{path}: vector blocks {[b.shape for b in blocks]} do not hold keys up to {rows - 1}")
        if blocks and len(blocks[-1]) < _BLOCK:  # the last block was saved up to the last key
            last = np.zeros((_BLOCK, index._dim), dtype=np.float16)
            last[: len(blocks[-1])] = blocks[-1]
            blocks[-1] = last
        index._rows = _Rows(index._dim, blocks)
        if header.get("trained"):
            index._pq = faiss.deserialize_index(codes)
            if index._pq.ntotal != len(keys):
                raise GalleryError(f"{path}: {index._pq.ntotal} codes for {len(keys)} keys")
            if index._dead:  # a file written with dead codes in it: a key above the gallery's slots would block it
                index._compact()
        return index

    def copy(self) -> Self:
        import faiss

        twin = type(self)(self._dim)
        twin._keys, twin._alive, twin._dead = self._keys.copy(), self._alive.copy(), self._dead
        twin._rows, twin.search_depth = self._rows.copy(), self.search_depth
        twin._pq = faiss.clone_index(self._pq) if self._pq is not None else None
        return twin
