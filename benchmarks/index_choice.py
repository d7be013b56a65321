"""Which index for a million faces: usearch's HNSW graph against FAISS's PQ codes, on the same 1M gallery.

The gallery benchmark (``gallery_index.py``) measures the gallery end to end with one library at a time; this
script asks the narrower question behind the default: on the same fitted synthetic gallery (512-d or 128-d, as
the ``--real`` embeddings; 250k
identities, 4 embeddings each, 300 probes of enrolled identities) and the same re-scoring (the 64 best candidates
re-scored exactly, grouped by identity: recall@5 against exact float32 search), what recall and latency each
index reaches, and at what build cost. Modes:

- ``hnsw``: usearch graphs (``--graphs 16/64,32/128``: connectivity/expansion_add) with ``--dtype`` vectors, the
  search depth (ef) swept;
- ``faiss``: FAISS index factory strings (``--factories 'PQ128x4fs;IVF1024,PQ64x4fs'``), each with
  ``nprobe/candidates`` settings (``--settings``), the candidates re-ranked exactly.

One JSON row per setting is appended to ``--out`` (JSON lines)::

    python -m benchmarks.index_choice hnsw --size 1000000 --graphs 16/64 --dtype f16 --depths 512,1024,2048
    python -m benchmarks.index_choice faiss --size 1000000 --factories 'PQ64x4fs;PQ128x4fs' --settings 0/1024,0/4096

The fitted model of LFW embeddings comes from ``gallery_index.py``'s cache (``--real``: an ``.npz`` with ``lfw``
embeddings and ``people``, as its ``_save_real`` writes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.gallery_index import IDS_PER_CHUNK, PER_IDENTITY, Faces, _chunk, _probe, fit_faces


def gallery(real: Path, size: int, queries: int, seed: int = 15) -> tuple[np.ndarray, np.ndarray, list[set[int]]]:
    """The synthetic gallery (float32), probes, and each probe's exact top-5 identities."""
    with np.load(real) as data:
        gen = Faces(fit_faces(data["lfw"], data["people"]))
        dim = int(data["lfw"].shape[1])
    n_ids = size // PER_IDENTITY
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(n_ids, size=queries, replace=False))
    x, q = np.zeros((size, dim), np.float32), np.zeros((queries, dim), np.float32)
    for c in range(math.ceil(n_ids / IDS_PER_CHUNK)):
        centres, emb = _chunk(gen, seed, c, n_ids)
        first = c * IDS_PER_CHUNK * PER_IDENTITY
        x[first : first + len(emb)] = emb
        for i in np.flatnonzero(ids // IDS_PER_CHUNK == c):
            q[i] = _probe(gen, centres[ids[i] - c * IDS_PER_CHUNK], seed, int(ids[i]))
    top = np.argsort(-(q @ x.T), axis=1)[:, :64]
    return x, q, [set(list(dict.fromkeys((row // PER_IDENTITY).tolist()))[:5]) for row in top]


def rescored(keys: np.ndarray, query: np.ndarray, store: np.ndarray) -> set[int]:
    """The top-5 identities of the candidates ``keys`` after exact re-scoring (as the gallery does)."""
    keys = keys[keys >= 0]
    order = np.argsort(-(store[keys].astype(np.float32) @ query))[:64]
    return set(list(dict.fromkeys((keys[order] // PER_IDENTITY).tolist()))[:5])


def sweep(search, queries: np.ndarray, exact: list[set[int]], store: np.ndarray) -> tuple[float, float, float]:  # noqa: ANN001
    """recall@5, p50 and p99 ms of ``search(query) -> candidate keys``, one query at a time."""
    times, hits = [], 0
    for query, truth in zip(queries, exact, strict=True):
        start = time.perf_counter()
        found = rescored(search(query), query, store)
        times.append(time.perf_counter() - start)
        hits += len(truth & found)
    return round(hits / 5 / len(queries), 4), *(round(1000 * float(np.percentile(times, p)), 2) for p in (50, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["hnsw", "faiss"])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--real", type=Path, required=True)
    parser.add_argument("--graphs", default="16/64")
    parser.add_argument("--dtype", default="f16")
    parser.add_argument("--depths", default="512,768,1024,1536,2048")
    parser.add_argument("--threads", type=int, default=2, help="build threads")
    parser.add_argument("--factories", default="PQ64x4fs;IVF1024,PQ64x4fs;PQ128x4fs")
    parser.add_argument("--settings", default="0/1024,0/4096", help="nprobe/candidates pairs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/index_choice_1m.jsonl"))
    args = parser.parse_args()
    x, q, exact = gallery(args.real, args.size, args.queries)
    store = x.astype(np.float16)
    dim = x.shape[1]
    common = {"size": args.size, "dim": dim, "queries": args.queries, "load_avg": [round(v, 1) for v in os.getloadavg()]}
    rows = []
    if args.mode == "hnsw":
        from usearch.index import Index

        for graph in args.graphs.split(","):
            m, ef_add = (int(v) for v in graph.split("/"))
            index = Index(ndim=dim, metric="cos", dtype=args.dtype, connectivity=m, expansion_add=ef_add)
            start = time.perf_counter()
            for first in range(0, args.size, 1 << 16):
                index.add(np.arange(first, min(args.size, first + (1 << 16)), dtype=np.uint64), x[first : first + (1 << 16)],
                          threads=args.threads)
            build = time.perf_counter() - start
            for depth in (int(d) for d in args.depths.split(",")):
                index.expansion_search = depth
                recall, p50, p99 = sweep(lambda v: index.search(v, 64, threads=1).keys.astype(np.int64), q, exact, store)  # noqa: B023
                rows.append(common | {"index": f"usearch HNSW {args.dtype}", "connectivity": m, "expansion_add": ef_add,
                                      "depth": depth, "recall_at_5": recall, "p50_ms": p50, "p99_ms": p99,
                                      "build_s": round(build), "build_threads": args.threads,
                                      "memory_mb": round(index.memory_usage / 1e6)})
                print(json.dumps(rows[-1]), flush=True)
    else:
        import faiss

        for factory in args.factories.split(";"):
            index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
            faiss.omp_set_num_threads(args.threads)
            start = time.perf_counter()
            index.train(x[np.random.default_rng(0).choice(args.size, min(args.size, 200_000), replace=False)])
            index.add(x)
            build = time.perf_counter() - start
            faiss.omp_set_num_threads(1)  # one query on one core, as the gallery asks
            for setting in args.settings.split(","):
                nprobe, candidates = (int(v) for v in setting.split("/"))
                if nprobe:
                    faiss.extract_index_ivf(index).nprobe = nprobe
                recall, p50, p99 = sweep(lambda v: index.search(v[None], candidates)[1][0], q, exact, store)  # noqa: B023
                rows.append(common | {"index": f"FAISS {factory}", "nprobe": nprobe or None, "candidates": candidates,
                                      "recall_at_5": recall, "p50_ms": p50, "p99_ms": p99, "build_s": round(build),
                                      "build_threads": args.threads, "code_bytes": int(faiss.serialize_index(index).size)})
                print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
