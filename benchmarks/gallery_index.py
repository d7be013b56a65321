"""1:N search at scale: the gallery's ANN path with each candidate library, side by side on the same galleries.

For every library and gallery size, in a fresh process (so memory figures are its own): build a synthetic gallery
of 512-d embeddings (real LFW embeddings from the shared model, plus seeded perturbations: identities around
them, four embeddings each), then measure the gallery's top-5 identification (one query per call, as the service
asks) p50/p99 latency and recall@5 against exact float32 search, memory (RSS delta), build time, enrolment and
deletion latency (and that no deleted identity comes back), save and load time. Writes a JSON result::

    python benchmarks/gallery_index.py --sizes 10000 100000 --out benchmarks/results/gallery_index.json
    python benchmarks/gallery_index.py --sizes 1000000 --libraries usearch   # the 1M gallery: minutes

The real embeddings are computed once and cached under ``outputs/cache``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEOPS_SHARED_DIR", ROOT.parent / "shared"))
PER_IDENTITY = 4
IDS_PER_CHUNK = 8192
SPREAD, NOISE = 1.33, 0.75  # cos(identity, its LFW base) ~ 0.6; cos(embedding, identity) ~ 0.8


def real_embeddings(n: int = 400, cache_dir: Path = ROOT / "outputs" / "cache") -> tuple[np.ndarray, list[str]]:
    """``n`` real LFW embeddings (two photos per person, people with at least two), computed once and cached."""
    from faceops.face.recognizer import FaceRecognizer

    recognizer = FaceRecognizer()
    key = hashlib.sha256(f"{recognizer.model_id}|{n}".encode()).hexdigest()[:16]
    cache = cache_dir / f"lfw-embeddings-{key}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            return data["embeddings"], [str(s) for s in data["identities"]]
    photos: list[tuple[str, Path]] = []
    for person in sorted(p for p in (SHARED / "datasets" / "lfw").iterdir() if p.is_dir()):
        jpgs = sorted(person.glob("*.jpg"))
        if len(jpgs) >= 2:
            photos += [(person.name, p) for p in jpgs[:2]]
        if len(photos) >= n:
            break
    print(f"embedding {len(photos)} LFW photos once (cached in {cache})", flush=True)
    result = recognizer.embed_subjects([p for _, p in photos])
    ok = [i for i in range(len(photos)) if i not in result.errors]
    embeddings, identities = result.embeddings[ok], [photos[i][0] for i in ok]
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, embeddings=embeddings, identities=np.asarray(identities, dtype=str))
    return embeddings, identities


# -- the other libraries behind the gallery's VectorIndex interface (usearch's is faceops.face.index) -----------
class FaissHnswSq8Index:
    """FAISS HNSW over 8-bit scalar-quantised vectors (inner product). FAISS's HNSW cannot remove: tombstones."""

    library: ClassVar[str] = "faiss-hnsw-sq8"

    def __init__(self, index: object, dim: int) -> None:
        self._index, self._dim = index, dim
        self._dead: set[int] = set()

    @classmethod
    def create(cls, dim: int) -> FaissHnswSq8Index:
        import faiss

        hnsw = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, 16, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction, hnsw.hnsw.efSearch = 128, 96
        return cls(faiss.IndexIDMap2(hnsw), dim)

    @classmethod
    def load(cls, path: Path) -> FaissHnswSq8Index:
        import faiss

        data = np.fromfile(path, dtype=np.uint8)
        dead = int(data[:8].view(np.int64)[0])
        index = faiss.deserialize_index(data[8 + 8 * dead :])
        loaded = cls(index, index.d)
        loaded._dead = set(data[8 : 8 + 8 * dead].view(np.int64).tolist())
        return loaded

    def __len__(self) -> int:
        return int(self._index.ntotal) - len(self._dead)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        import faiss

        faiss.omp_set_num_threads(os.cpu_count() or 1)  # builds in parallel; one query runs on one thread
        if not self._index.is_trained:
            self._index.train(vectors)  # SQ8 learns per-dimension ranges from the first batch
        self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(keys, dtype=np.int64))

    def remove(self, keys: np.ndarray) -> None:
        self._dead.update(int(k) for k in keys)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        import faiss

        faiss.omp_set_num_threads(1)  # OpenMP start-up and spinning cost more than one query's search
        _, keys = self._index.search(np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32), k + len(self._dead))
        if self._dead:
            keys = np.array([[x for x in row if x not in self._dead][:k] + [-1] * k for row in keys])[:, :k]
        return keys.astype(np.int64)

    def save(self, path: Path) -> None:
        import faiss

        dead = np.asarray(sorted(self._dead), dtype=np.int64)
        with path.open("wb") as handle:
            handle.write(np.int64(len(dead)).tobytes() + dead.tobytes())
            faiss.serialize_index(self._index).tofile(handle)

    def copy(self) -> FaissHnswSq8Index:
        import faiss

        twin = FaissHnswSq8Index(faiss.clone_index(self._index), self._dim)
        twin._dead = set(self._dead)
        return twin


class HnswlibIndex:
    """hnswlib's HNSW over float32 vectors (inner product); deletion by ``mark_deleted``."""

    library: ClassVar[str] = "hnswlib"

    def __init__(self, index: object, dim: int, deleted: int = 0) -> None:
        self._index, self._dim, self._deleted = index, dim, deleted

    @classmethod
    def create(cls, dim: int) -> HnswlibIndex:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dim)
        index.init_index(max_elements=1024, ef_construction=128, M=16)
        index.set_ef(96)
        return cls(index, dim)

    @classmethod
    def load(cls, path: Path) -> HnswlibIndex:
        import hnswlib

        data = path.read_bytes()
        dim, deleted = (int(x) for x in np.frombuffer(data[:16], dtype=np.int64))
        index = hnswlib.Index(space="ip", dim=dim)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            (Path(tmp) / "h").write_bytes(data[16:])
            index.load_index(str(Path(tmp) / "h"))
        index.set_ef(96)
        return cls(index, dim, deleted)

    def __len__(self) -> int:
        return int(self._index.get_current_count()) - self._deleted  # the count includes marked ones

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        need = self._index.element_count + len(keys)
        if need > self._index.max_elements:
            self._index.resize_index(max(need, self._index.max_elements * 3 // 2))
        self._index.add_items(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(keys, dtype=np.int64))

    def remove(self, keys: np.ndarray) -> None:
        for key in keys:
            self._index.mark_deleted(int(key))
        self._deleted += len(keys)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        labels, _ = self._index.knn_query(np.atleast_2d(queries).astype(np.float32), k=min(k, len(self)))
        out = np.full((len(labels), k), -1, dtype=np.int64)
        out[:, : labels.shape[1]] = labels
        return out

    def save(self, path: Path) -> None:
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            self._index.save_index(str(Path(tmp) / "h"))
            header = np.array([self._dim, self._deleted], dtype=np.int64).tobytes()
            path.write_bytes(header + (Path(tmp) / "h").read_bytes())

    def copy(self) -> HnswlibIndex:
        raise NotImplementedError("not needed by the benchmark")


def _index_types() -> dict[str, type]:
    from faceops.face.index import UsearchIndex

    return {"usearch": UsearchIndex, "faiss-hnsw-sq8": FaissHnswSq8Index, "hnswlib": HnswlibIndex}


# -- synthetic galleries ----------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _chunk(real: np.ndarray, seed: int, c: int, n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """Identity centres and their embeddings (PER_IDENTITY each, rows grouped by identity) of chunk ``c``."""
    rng = np.random.default_rng([seed, c])
    count = min(IDS_PER_CHUNK, n_ids - c * IDS_PER_CHUNK)
    base = real[rng.integers(len(real), size=count)]
    centres = _unit(base + SPREAD * _unit(rng.standard_normal((count, real.shape[1]), dtype=np.float32)))
    noise = _unit(rng.standard_normal((count, PER_IDENTITY, real.shape[1]), dtype=np.float32))
    embeddings = _unit(centres[:, None, :] + NOISE * noise).reshape(-1, real.shape[1])
    return centres, embeddings


def _probe(centre: np.ndarray, seed: int, i: int) -> np.ndarray:
    noise = _unit(np.random.default_rng([seed, 1 << 30, i]).standard_normal(centre.shape, dtype=np.float32))
    return _unit(centre + NOISE * noise)


def _rss() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


class _Count(logging.Handler):
    """Counts the gallery's warnings (an index file it could not use and rebuilt)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 3)


def _measure(library: str, size: int, n_queries: int, seed: int, real_path: str, queue: mp.Queue) -> None:
    from faceops.face.gallery import Gallery

    index_type = _index_types()[library]
    with np.load(real_path, allow_pickle=False) as data:
        real = _unit(data["embeddings"])
    n_ids = size // PER_IDENTITY
    chunks = math.ceil(n_ids / IDS_PER_CHUNK)
    rng = np.random.default_rng(seed)
    query_ids = np.sort(rng.choice(n_ids, size=min(n_queries, n_ids), replace=False))
    queries = np.zeros((len(query_ids), real.shape[1]), dtype=np.float32)
    for c in np.unique(query_ids // IDS_PER_CHUNK):  # probes: new photos of enrolled identities
        centres, _ = _chunk(real, seed, int(c), n_ids)
        for q in np.flatnonzero(query_ids // IDS_PER_CHUNK == c):
            queries[q] = _probe(centres[query_ids[q] - c * IDS_PER_CHUNK], seed, int(query_ids[q]))
    before = _rss()
    gallery = Gallery("benchmark", exact_below=1, index_type=index_type)
    best_s = np.full((len(queries), 64), -np.inf, dtype=np.float32)
    best_r = np.zeros((len(queries), 64), dtype=np.int64)
    build = 0.0
    for c in range(chunks):
        _, embeddings = _chunk(real, seed, c, n_ids)
        first = c * IDS_PER_CHUNK
        names = [f"id{first + i:07d}" for i in range(len(embeddings) // PER_IDENTITY) for _ in range(PER_IDENTITY)]
        start = time.perf_counter()
        gallery.add_batch(names, embeddings)
        build += time.perf_counter() - start
        sims = queries @ embeddings.T  # exact float32 ground truth, merged chunk by chunk
        rows = np.concatenate([best_r, np.broadcast_to(np.arange(len(embeddings)) + first * PER_IDENTITY, sims.shape)], 1)
        both = np.concatenate([best_s, sims], 1)
        top = np.argsort(-both, axis=1, kind="stable")[:, :64]
        best_s, best_r = np.take_along_axis(both, top, 1), np.take_along_axis(rows, top, 1)
        print(f"  {library} {size}: {min((c + 1) * IDS_PER_CHUNK, n_ids) * PER_IDENTITY} embeddings added, "
              f"{build:.1f} s", flush=True)
    built = _rss()
    exact = []
    for row in best_r // PER_IDENTITY:
        ids = list(dict.fromkeys(row.tolist()))[:5]
        exact.append({f"id{i:07d}" for i in ids})
    gallery.identify(queries[:5], 0.5, 5)  # warm-up
    latencies, hits, top1 = [], 0, 0
    for q, query in enumerate(queries):
        start = time.perf_counter()
        match = gallery.identify(query, 0.5, 5)[0]
        latencies.append(time.perf_counter() - start)
        found = [n for n, _ in match.candidates]
        hits += len(exact[q] & set(found))
        top1 += found[0] == f"id{query_ids[q]:07d}"
    sweep = []
    if hasattr(gallery.index, "search_depth"):  # the recall/latency trade-off of the chosen library
        default = gallery.index.search_depth
        for depth in (48, default, 2 * default, 4 * default):
            gallery.index.search_depth = depth
            times, found_5 = [], 0
            for q, query in enumerate(queries):
                start = time.perf_counter()
                names = {n for n, _ in gallery.identify(query, 0.5, 5)[0].candidates}
                times.append(time.perf_counter() - start)
                found_5 += len(exact[q] & names)
            sweep.append({"search_depth": depth, "p50_ms": _pct(times, 50), "p99_ms": _pct(times, 99),
                          "recall_at_5": round(found_5 / (5 * len(queries)), 4)})
            print(f"  search depth {depth}: {sweep[-1]}", flush=True)
        gallery.index.search_depth = default
    rng = np.random.default_rng([seed, 7])
    enrol = []
    for i in range(50):
        vectors = _unit(rng.standard_normal((PER_IDENTITY, real.shape[1]), dtype=np.float32))
        start = time.perf_counter()
        gallery.add(f"new{i:03d}", vectors)
        enrol.append(time.perf_counter() - start)
    deleted, returned = [], 0
    for q in range(min(50, len(queries))):
        victim = f"id{query_ids[q]:07d}"
        start = time.perf_counter()
        gallery.remove(victim)
        deleted.append(time.perf_counter() - start)
        returned += victim in {n for n, _ in gallery.identify(queries[q], 0.5, 5)[0].candidates}
    rebuilds = _Count()
    logging.getLogger("faceops.face").addHandler(rebuilds)
    with tempfile.TemporaryDirectory(dir=ROOT / "outputs") as tmp:
        start = time.perf_counter()
        gallery.save(Path(tmp) / "gallery.npz")
        saved = time.perf_counter() - start
        del gallery
        start = time.perf_counter()
        loaded = Gallery.load(Path(tmp) / "gallery.npz", exact_below=1, index_type=index_type)
        load_s = time.perf_counter() - start
        reloaded_ok = loaded.uses_index and len(loaded) == size  # 50 identities deleted, 50 enrolled
    queue.put({
        "library": library, "size": size, "identities": n_ids + 50 - min(50, len(queries)),
        "build_seconds": round(build, 2), "build_per_second": round(size / build),
        "search_top5_p50_ms": _pct(latencies, 50), "search_top5_p99_ms": _pct(latencies, 99),
        "recall_at_5": round(hits / (5 * len(queries)), 4), "top1_is_probe_identity": round(top1 / len(queries), 4),
        "enrol_p50_ms": _pct(enrol, 50), "enrol_p99_ms": _pct(enrol, 99),
        "delete_p50_ms": _pct(deleted, 50), "delete_p99_ms": _pct(deleted, 99),
        "deleted_identity_returned": returned, "save_seconds": round(saved, 2), "load_seconds": round(load_s, 2),
        "reloaded_with_index_file": bool(reloaded_ok) and not rebuilds.count,
        "rss_before_mb": round(before["VmRSS"]), "rss_after_build_mb": round(built["VmRSS"]),
        "rss_delta_mb": round(built["VmRSS"] - before["VmRSS"]),
        "anon_delta_mb": round(built["RssAnon"] - before["RssAnon"]),
        "peak_rss_mb": round(_rss()["VmHWM"]),
        "queries": len(queries), "search_depth_sweep": sweep,
    })


def _save_real(path: str) -> None:
    np.savez(path, embeddings=real_embeddings()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gallery_index.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--libraries", nargs="+", default=["usearch", "faiss-hnsw-sq8", "hnswlib"],
                        choices=["usearch", "faiss-hnsw-sq8", "hnswlib"])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--note", default="", help="e.g. whether other work shared the machine")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    (ROOT / "outputs").mkdir(exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=ROOT / "outputs", suffix=".npz", delete=False) as handle:
        pass
    proc = ctx.Process(target=_save_real, args=(handle.name,))  # torch stays out of this process
    proc.start()
    proc.join()
    with np.load(handle.name, allow_pickle=False) as data:
        real = data["embeddings"]
    rows = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    try:
        for size in args.sizes:
            for library in args.libraries:
                print(f"{library}, {size} embeddings", flush=True)
                queue = ctx.Queue()
                proc = ctx.Process(target=_measure, args=(library, size, args.queries, args.seed, handle.name, queue))
                proc.start()
                proc.join()
                if proc.exitcode != 0 or queue.empty():
                    raise SystemExit(f"{library} / {size} failed (exit code {proc.exitcode})")
                row = queue.get()
                print(json.dumps(row), flush=True)
                rows = [r for r in rows if (r["library"], r["size"]) != (library, size)] + [row]
    finally:
        Path(handle.name).unlink(missing_ok=True)
    import usearch, faiss, hnswlib  # noqa: E401, I001  # versions only

    result = {
        "benchmark": "gallery 1:N search through an ANN index with exact re-scoring (top-5 identities)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {"usearch": usearch.__version__, "faiss-cpu": faiss.__version__,
                     "hnswlib": getattr(hnswlib, "__version__", "0.8.0")},
        "data": f"{len(real)} real LFW embeddings (pretrained CASIA-WebFace model) as bases; identities around "
                f"them (cos ~0.6 to the base), {PER_IDENTITY} embeddings each (cos ~0.8 to the identity); queries "
                "are new probes of enrolled identities; recall@5: overlap of the top-5 identities with exact "
                "float32 search; seed " + str(args.seed),
        "note": args.note or "each row measured in a fresh process; the 2 cores were shared with other work",
        "rows": sorted(rows, key=lambda r: (r["size"], r["library"])),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")




if __name__ == "__main__":
    sys.exit(main())
