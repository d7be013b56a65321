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


def _recognizer(model: str):  # noqa: ANN202  # FaceRecognizer, imported late (torch stays out of the parent)
    """``default``: the default model (MobileFaceNet, 128-d); ``inception``: the pretrained InceptionResnetV1 (512-d)."""
    from faceops.evaluation.bundle import ModelBundle
    from faceops.face.recognizer import FaceRecognizer

    return ModelBundle.default().recognizer() if model == "default" else FaceRecognizer()


def lfw_all_embeddings(
    cache_dir: Path = ROOT / "outputs" / "cache", partial: bool = False, model: str = "inception",
    cached_only: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Every LFW photo's subject embedding and person (photos without a detected face left out), cached.

    Aligned crops already in a crop cache of the same preprocessing fingerprint are embedded first (checked
    against a fresh detection on a few photos), then the other photos are detected. Work is saved every batch
    (``<cache>.part-*.npz``) and resumed; ``partial=True`` returns what is done so far instead of finishing.
    """
    recognizer = _recognizer(model)
    key = hashlib.sha256(f"{recognizer.model_id}|lfw-all".encode()).hexdigest()[:16]
    cache = cache_dir / f"lfw-all-embeddings-{key}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            return data["embeddings"], data["people"]
    photos = sorted((SHARED / "datasets" / "lfw").glob("*/*.jpg"))
    names = [f"{p.parent.name}/{p.name}" for p in photos]
    done: dict[str, np.ndarray] = {}
    for part in sorted(cache_dir.glob(f"{cache.stem}.part-*.npz")):
        with np.load(part, allow_pickle=False) as data:
            done |= dict(zip(data["names"].tolist(), data["embeddings"], strict=True))
    size = recognizer.config.align.image_size
    dim = recognizer.embedder.embed(np.zeros((1, size, size, 3), np.uint8)).shape[1]

    def so_far() -> tuple[np.ndarray, np.ndarray]:
        people = np.asarray([n.split("/")[0] for n in done], dtype=str)
        return np.asarray(list(done.values()), dtype=np.float32).reshape(-1, dim), people

    if partial:
        return so_far()

    def save_part(batch: list[str], vectors: np.ndarray) -> None:
        done.update(zip(batch, vectors, strict=True))
        np.savez(cache_dir / f"{cache.stem}.part-{len(done):06d}.npz", names=np.asarray(batch, dtype=str),
                 embeddings=vectors)
        print(f"  {len(done)} of {len(photos)} embedded", flush=True)

    cache_dir.mkdir(parents=True, exist_ok=True)
    todo = [i for i, n in enumerate(names) if n not in done]
    shas = {hashlib.sha256(photos[i].read_bytes()).hexdigest(): i for i in todo}
    crops: dict[int, np.ndarray] = {}
    for shard in sorted((cache_dir / f"crops-{recognizer.config.crop_fingerprint()}").glob("shard-*.npz")):
        with np.load(shard, allow_pickle=False) as data:
            wanted = [(row, shas[sha]) for row, sha in enumerate(data["sha256"].tolist()) if sha in shas]
            if wanted:
                shard_crops, shard_found = data["crops"], data["face_found"]  # each access decompresses anew
                crops |= {i: shard_crops[row] for row, i in wanted if shard_found[row]}
    if crops and not done:
        check = sorted(crops)[:: max(1, len(crops) // 6)][:6]
        fresh, _, errors = recognizer.subject_crops([photos[i] for i in check])
        same = recognizer.embedder.embed(fresh) @ recognizer.embedder.embed(np.stack([crops[i] for i in check])).T
        if errors or np.diag(same).min() < 0.99:
            print(f"cached crops differ from fresh ones ({np.diag(same)}): detecting every photo", flush=True)
            crops = {}
    print(f"{len(photos)} LFW photos: {len(done)} embedded before, {len(crops)} crops cached", flush=True)
    cached = np.random.default_rng(0).permutation(sorted(crops)).tolist()  # a partial result is a random sample
    for start in range(0, len(cached), 256):
        batch = cached[start : start + 256]
        save_part([names[i] for i in batch], recognizer.embedder.embed(np.stack([crops[i] for i in batch])))
    if cached_only:  # the photos whose crops were cached (a random sample of LFW): no detection of the rest
        return so_far()
    rest = [i for i in todo if i not in crops]
    for start in range(0, len(rest), 128):
        batch = rest[start : start + 128]
        result = recognizer.embed_subjects([photos[i] for i in batch])
        ok = [j for j in range(len(batch)) if j not in result.errors]
        save_part([names[batch[j]] for j in ok], result.embeddings[ok])
    order = [n for n in names if n in done]
    embeddings = np.stack([done[n] for n in order]).astype(np.float32)
    people = np.asarray([n.split("/")[0] for n in order], dtype=str)
    np.savez(cache, embeddings=embeddings, people=people)
    for part in cache_dir.glob(f"{cache.stem}.part-*.npz"):
        part.unlink()
    return embeddings, people


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

    def add(self, keys: np.ndarray, vectors: np.ndarray, threads: int = 1) -> None:
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

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        # FAISS keeps only the 8-bit codes: the gallery re-scores with their decoded vectors (not exact; an exact
        # re-scoring would need a float16 copy beside the index, which its memory figure does not include)
        return np.stack([self._index.reconstruct(int(k)) for k in keys]) if len(keys) else np.zeros((0, self._dim))

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

    def add(self, keys: np.ndarray, vectors: np.ndarray, threads: int = 1) -> None:
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

    def vectors(self, keys: np.ndarray) -> np.ndarray:
        if not len(keys):
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.asarray(self._index.get_items(np.asarray(keys, dtype=np.int64), return_type="numpy"), np.float32)

    def save(self, path: Path) -> None:
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            self._index.save_index(str(Path(tmp) / "h"))
            header = np.array([self._dim, self._deleted], dtype=np.int64).tobytes()
            path.write_bytes(header + (Path(tmp) / "h").read_bytes())

    def copy(self) -> HnswlibIndex:
        raise NotImplementedError("not needed by the benchmark")


def _index_types() -> dict[str, type]:
    from faceops.face.index import PQScanIndex, UsearchIndex

    return {"faiss-pq-fastscan": PQScanIndex, "usearch": UsearchIndex, "faiss-hnsw-sq8": FaissHnswSq8Index,
            "hnswlib": HnswlibIndex}


# -- synthetic galleries ----------------------------------------------------------------------------------------
def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def fit_faces(embeddings: np.ndarray, people: np.ndarray) -> dict[str, np.ndarray]:
    """A Gaussian model of real face embeddings: identity centres ~ N(mean, B), photos ~ N(centre, W).

    ``W`` is the covariance of photos around their person's mean (people with two or more photos), ``B`` the
    covariance of the person means less the part of ``W`` a mean of few photos still carries (clipped at zero).
    Returned as square roots (``z @ root.T`` samples), so identities and photos can be drawn chunk by chunk.
    """
    x = _unit(embeddings).astype(np.float64)
    _, inv, counts = np.unique(people, return_inverse=True, return_counts=True)
    means = np.zeros((len(counts), x.shape[1]))
    np.add.at(means, inv, x)
    means /= counts[:, None]
    several = counts[inv] >= 2
    resid = (x - means[inv])[several] * np.sqrt(counts[inv][several] / (counts[inv][several] - 1))[:, None]
    within = resid.T @ resid / len(resid)
    centre = means.mean(0)
    between = np.cov(means.T) - within * float(np.mean(1.0 / counts))

    def root(cov: np.ndarray) -> np.ndarray:
        # a floor of 2% of the mean variance keeps it positive definite; shrinking it further towards isotropy
        # narrows the pair cosines (measured: 0.1 of 768 photos' fit moved the nearest impostor median 0.42 -> 0.39)
        values, vectors = np.linalg.eigh((cov + cov.T) / 2)
        values = values.clip(min=0) + 0.02 * values.clip(min=0).mean()
        return (vectors * np.sqrt(values)).astype(np.float32)

    return {"mean": centre.astype(np.float32), "between": root(between), "within": root(within)}


class Faces:
    """Identities and photos drawn from :func:`fit_faces`' model of real LFW embeddings (the realistic data)."""

    name = "fitted"

    def __init__(self, model: dict[str, np.ndarray]) -> None:
        self.mean, self.between, self.within = model["mean"], model["between"], model["within"]

    def identities(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return self.mean + rng.standard_normal((count, len(self.mean)), dtype=np.float32) @ self.between.T

    def photos(self, rng: np.random.Generator, centres: np.ndarray, per: int) -> np.ndarray:
        noise = rng.standard_normal((len(centres), per, len(self.mean)), dtype=np.float32) @ self.within.T
        return _unit(centres[:, None, :] + noise)


class DenseLooks:
    """The first generator, kept as a stress case: identities around only 400 real embeddings ("looks"), so at
    1M each look has 625 identities and impostors are far closer than between real people."""

    name = "dense"

    def __init__(self, real: np.ndarray) -> None:
        self.real = _unit(real)

    def identities(self, rng: np.random.Generator, count: int) -> np.ndarray:
        base = self.real[rng.integers(len(self.real), size=count)]
        return _unit(base + SPREAD * _unit(rng.standard_normal((count, self.real.shape[1]), dtype=np.float32)))

    def photos(self, rng: np.random.Generator, centres: np.ndarray, per: int) -> np.ndarray:
        noise = _unit(rng.standard_normal((len(centres), per, centres.shape[1]), dtype=np.float32))
        return _unit(centres[:, None, :] + NOISE * noise)


Generator = Faces | DenseLooks


def _chunk(gen: Generator, seed: int, c: int, n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """Identity centres and their embeddings (PER_IDENTITY each, rows grouped by identity) of chunk ``c``."""
    rng = np.random.default_rng([seed, c])
    centres = gen.identities(rng, min(IDS_PER_CHUNK, n_ids - c * IDS_PER_CHUNK))
    return centres, gen.photos(rng, centres, PER_IDENTITY).reshape(-1, centres.shape[1])


def _probe(gen: Generator, centre: np.ndarray, seed: int, i: int) -> np.ndarray:
    return gen.photos(np.random.default_rng([seed, 1 << 30, i]), centre[None], 1)[0, 0]


def _nearest_impostor(x: np.ndarray, people: np.ndarray) -> np.ndarray:
    """For each photo of a person with two or more photos: the best cosine to another person's photo."""
    x = _unit(x)
    _, inv, counts = np.unique(people, return_inverse=True, return_counts=True)
    rows = np.flatnonzero(counts[inv] >= 2)
    best = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), 1024):
        part = rows[start : start + 1024]
        sims = x[part] @ x.T
        sims[inv[part][:, None] == inv[None, :]] = -1
        best[start : start + 1024] = sims.max(1)
    return best


def _pairs(x: np.ndarray, people: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of 20k random different-people pairs and of every same-person pair (up to 20k)."""
    x = _unit(x)
    a, b = rng.integers(len(x), size=(2, 40_000))
    keep = people[a] != people[b]
    impostor = np.einsum("ij,ij->i", x[a[keep]], x[b[keep]])[:20_000]
    order = np.argsort(people, kind="stable")
    same = [(i, j) for k, i in enumerate(order) for j in order[k + 1 : k + 30] if people[i] == people[j]][:20_000]
    genuine = np.einsum("ij,ij->i", x[[i for i, _ in same]], x[[j for _, j in same]])
    return impostor, genuine


def realism(real: np.ndarray, people: np.ndarray, gens: list[Generator], seed: int) -> dict[str, object]:
    """Real LFW against each generator at LFW's own shape (same people, same photos per person)."""
    _, inv, counts = np.unique(people, return_inverse=True, return_counts=True)

    def summary(x: np.ndarray, labels: np.ndarray) -> dict[str, object]:
        impostor, genuine = _pairs(x, labels, np.random.default_rng(seed))
        nearest = _nearest_impostor(x, labels)
        q = (5, 25, 50, 75, 95)

        def quantiles(v: np.ndarray) -> dict[str, float]:
            return {f"p{p}": round(float(np.percentile(v, p)), 3) for p in q} | {"mean": round(float(v.mean()), 3)}

        return {"impostor_pair_cos": quantiles(impostor), "genuine_pair_cos": quantiles(genuine),
                "nearest_impostor_cos": quantiles(nearest)}

    out: dict[str, object] = {"photos": len(real), "people": len(counts),
                              "people_with_2_or_more": int((counts >= 2).sum()), "real_lfw": summary(real, people)}
    for gen in gens:
        rng = np.random.default_rng([seed, 99])
        centres = gen.identities(rng, len(counts))
        x = np.concatenate([gen.photos(rng, centres[i : i + 1], int(n))[0] for i, n in enumerate(counts)])
        out[gen.name] = summary(x, np.repeat(np.arange(len(counts)), counts).astype(str))
    return out


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


def _measure(  # noqa: PLR0915  # one measurement, step after step
    library: str, size: int, n_queries: int, seed: int, real_path: str, queue: mp.Queue, data: str = "fitted",
    build_threads: int = 1, keep: str = "", model_id: str = "benchmark",
) -> None:
    from faceops.face.gallery import Gallery

    index_type = _index_types()[library]
    with np.load(real_path, allow_pickle=False) as stored:
        gen: Generator = DenseLooks(stored["embeddings"]) if data == "dense" else Faces(
            {k: stored[k] for k in ("mean", "between", "within")})
        dim = int(stored["embeddings"].shape[1])
    load_before = os.getloadavg()
    n_ids = size // PER_IDENTITY
    chunks = math.ceil(n_ids / IDS_PER_CHUNK)
    rng = np.random.default_rng(seed)
    query_ids = np.sort(rng.choice(n_ids, size=min(n_queries, n_ids), replace=False))
    queries = np.zeros((len(query_ids), dim), dtype=np.float32)
    for c in np.unique(query_ids // IDS_PER_CHUNK):  # probes: new photos of enrolled identities
        centres, _ = _chunk(gen, seed, int(c), n_ids)
        for q in np.flatnonzero(query_ids // IDS_PER_CHUNK == c):
            queries[q] = _probe(gen, centres[query_ids[q] - c * IDS_PER_CHUNK], seed, int(query_ids[q]))
    before = _rss()
    gallery = Gallery(model_id, exact_below=1, index_type=index_type, build_threads=build_threads)
    best_s = np.full((len(queries), 64), -np.inf, dtype=np.float32)
    best_r = np.zeros((len(queries), 64), dtype=np.int64)
    build = 0.0
    for c in range(chunks):
        _, embeddings = _chunk(gen, seed, c, n_ids)
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
    default_depth = getattr(gallery.index, "search_depth", None)
    if default_depth is not None:  # the recall/latency trade-off of the chosen library
        default = default_depth
        for depth in sorted({48, 96, 192, 384, 768, 1024, 1536, 2048, default}):
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
        vectors = gen.photos(rng, gen.identities(rng, 1), PER_IDENTITY)[0]
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
    impostor = []  # the probes' nearest other identity (exact), to compare with real data
    for q, (scores, rows) in enumerate(zip(best_s, best_r // PER_IDENTITY, strict=True)):
        other = np.flatnonzero(rows != query_ids[q])
        impostor.append(float(scores[other[0]]) if len(other) else np.nan)
    with tempfile.TemporaryDirectory(dir=ROOT / "outputs") as tmp:
        folder = Path(keep) if keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        gallery.save(folder / "gallery.npz")
        saved = time.perf_counter() - start
        del gallery
        start = time.perf_counter()
        loaded = Gallery.load(folder / "gallery.npz", exact_below=1, index_type=index_type)
        load_s = time.perf_counter() - start
        reloaded_ok = loaded.uses_index and len(loaded) == size  # 50 identities deleted, 50 enrolled
    queue.put({
        "library": library, "size": size, "data": data, "build_threads": build_threads, "dim": dim,
        "model_id": model_id, "search_depth_default": default_depth,
        "load_avg_before": [round(x, 1) for x in load_before], "load_avg_after": [round(x, 1) for x in os.getloadavg()],
        "probe_nearest_impostor_cos": {f"p{p}": round(float(np.nanpercentile(impostor, p)), 3) for p in (5, 50, 95)},
        "identities": n_ids + 50 - min(50, len(queries)),
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


def dtype_comparison(n: int = 3_000, rounds: int = 2) -> dict[str, object]:
    """usearch's int8, float16 and float32 vectors side by side (alternated): build and search time, same graph
    settings. Keeping float16 vectors once, in the index, would save the gallery's float16 copy (1 GB at 1M)."""
    from usearch.index import Index

    from faceops.face.index import UsearchIndex

    vectors = _unit(np.random.default_rng(0).standard_normal((n, 512), dtype=np.float32))
    times: dict[str, dict[str, list[float]]] = {d: {"add_s": [], "search_300_s": []} for d in ("i8", "f16", "f32")}
    for _ in range(rounds):
        for dtype, row in times.items():
            index = Index(ndim=512, metric="cos", dtype=dtype, connectivity=UsearchIndex.connectivity,
                          expansion_add=UsearchIndex.expansion_add, expansion_search=UsearchIndex.expansion_search)
            start = time.perf_counter()
            index.add(np.arange(n, dtype=np.uint64), vectors, threads=1)
            row["add_s"].append(round(time.perf_counter() - start, 2))
            start = time.perf_counter()
            index.search(vectors[:300], 64, threads=1)
            row["search_300_s"].append(round(time.perf_counter() - start, 3))
    return {"vectors": n, "rounds_alternated": rounds, "load_avg": [round(x, 1) for x in os.getloadavg()],
            "cpu_simd": Index(ndim=512, metric="cos", dtype="f16").hardware_acceleration, "times": times}


def _save_real(path: str, partial: bool, model: str = "inception", cached_only: bool = False) -> None:
    lfw, people = lfw_all_embeddings(partial=partial, model=model, cached_only=cached_only)
    # the dense stress case's 400 bases: two photos each of LFW people (the default model: a seeded sample of lfw)
    real = real_embeddings()[0] if model == "inception" else lfw[np.random.default_rng(0).permutation(len(lfw))[:400]]
    np.savez(path, embeddings=real, lfw=lfw, people=people, model_id=np.array(_recognizer(model).model_id))


def _key(row: dict) -> tuple:
    return row["library"], row["size"], row.get("data", "dense"), row.get("build_threads", 1), row.get("dim", 512)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gallery_index.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--libraries", nargs="+", default=["faiss-pq-fastscan", "usearch", "faiss-hnsw-sq8", "hnswlib"],
                        choices=["faiss-pq-fastscan", "usearch", "faiss-hnsw-sq8", "hnswlib"])
    parser.add_argument("--data", nargs="+", default=["fitted"], choices=["fitted", "dense"],
                        help="fitted: drawn from a Gaussian model of all LFW embeddings; dense: the stress case")
    parser.add_argument("--build-threads", type=int, nargs="+", default=[1])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--keep", type=Path, help="save the (last) gallery here, e.g. a service's state folder")
    parser.add_argument("--model-id", default="", help="the gallery's model id (default: the shared model's)")
    parser.add_argument("--lfw-partial", action="store_true", help="fit on the LFW photos embedded so far")
    parser.add_argument("--model", default="inception", choices=["default", "inception"],
                        help="whose embeddings: the default model (MobileFaceNet, 128-d) or InceptionResnetV1 (512-d)")
    parser.add_argument("--lfw-cached-only", action="store_true",
                        help="fit on the LFW photos whose aligned crops are cached (no detection of the others)")
    parser.add_argument("--dtype-check", action="store_true", help="only compare usearch's vector types")
    parser.add_argument("--note", default="", help="e.g. whether other work shared the machine")
    args = parser.parse_args()
    if args.dtype_check:
        result = json.loads(args.out.read_text())
        result["f16_vs_i8"] = dtype_comparison()
        args.out.write_text(json.dumps(result, indent=2))
        print(json.dumps(result["f16_vs_i8"]))
        return
    ctx = mp.get_context("spawn")
    (ROOT / "outputs").mkdir(exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=ROOT / "outputs", suffix=".npz", delete=False) as handle:
        pass
    # torch stays out of this process
    proc = ctx.Process(target=_save_real, args=(handle.name, args.lfw_partial, args.model, args.lfw_cached_only))
    proc.start()
    proc.join()
    with np.load(handle.name, allow_pickle=False) as data:
        real, lfw, people, model_id = data["embeddings"], data["lfw"], data["people"], str(data["model_id"])
    model = fit_faces(lfw, people)
    np.savez(handle.name, embeddings=real, **model)
    realism_result = realism(lfw, people, [Faces(model), DenseLooks(real)], args.seed)
    print(json.dumps(realism_result), flush=True)
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    rows = previous.get("rows", [])
    try:
        for size in args.sizes:
            for data_kind in args.data:
                for threads in args.build_threads:
                    for library in args.libraries:
                        print(f"{library}, {size} embeddings, {data_kind} data, {threads} build thread(s)", flush=True)
                        queue = ctx.Queue()
                        keep = str(args.keep) if args.keep else ""
                        proc = ctx.Process(target=_measure, args=(
                            library, size, args.queries, args.seed, handle.name, queue, data_kind, threads, keep,
                            args.model_id or model_id))
                        proc.start()
                        proc.join()
                        if proc.exitcode != 0 or queue.empty():
                            raise SystemExit(f"{library} / {size} failed (exit code {proc.exitcode})")
                        row = queue.get()
                        print(json.dumps(row), flush=True)
                        rows = [r for r in rows if _key(r) != _key(row)] + [row]
    finally:
        Path(handle.name).unlink(missing_ok=True)
    import usearch, faiss, hnswlib  # noqa: E401, I001  # versions only

    for row in rows:
        row.setdefault("data", "dense")
        row.setdefault("build_threads", 1)
    result = {
        "benchmark": "gallery 1:N search through an ANN index with exact re-scoring (top-5 identities)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {"usearch": usearch.__version__, "faiss-cpu": faiss.__version__,
                     "hnswlib": getattr(hnswlib, "__version__", "0.8.0")},
        "data": {
            "fitted": f"identities drawn from a Gaussian fitted to {len(lfw)} real LFW embeddings of {len(set(people))} "
                      f"people (model {model_id}, {real.shape[1]}-d; --model {args.model}): centres ~ N(mean of person means, "
                      "between-person "
                      f"covariance), {PER_IDENTITY} photos each ~ N(centre, within-person covariance), normalised",
            "dense": f"the stress case: identities around {len(real)} real LFW embeddings (cos ~0.6 to the base), "
                     f"{PER_IDENTITY} embeddings each (cos ~0.8 to the identity)",
            "queries": "new probes (photos) of enrolled identities; recall@5: overlap of the top-5 identities with "
                       f"exact float32 search; seed {args.seed}",
        },
        "data_realism": realism_result | {
            "how": "at LFW's own shape (the same people and photos per person): cosines of random different-people "
                   "pairs, of same-person pairs, and each photo's best cosine to another person's photo",
        },
        "note": args.note or previous.get("note", "each row measured in a fresh process; 2 shared cores"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "rows": sorted(rows, key=lambda r: (r["size"], r["data"], r["library"], r["build_threads"])),
    }
    for extra in ("parameters", "f16_vs_i8", "diagnosis_1m_density_at_100k"):
        if extra in previous:
            result[extra] = previous[extra]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
