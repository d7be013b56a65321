"""The monitor's embedding cache forgets: entries past ``embedding_cache_max_age`` and those whose request left the
request log (an erased identity's, or pruned by the log's retention) are dropped at each run."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from faceops.monitoring.config import MonitorConfig
from faceops.monitoring.monitor import _prune_cache
from faceops.monitoring.state import EmbeddingCache

from faceops.telemetry.requestlog import FaceRecord, RequestLog, RequestRecord


def _log(path: Path, now: float) -> RequestLog:
    log = RequestLog(path, retention_days=30)
    for request_id, name, age_days in (("r-gone", "Colin_Powell", 1), ("r-stays", "Tony_Blair", 1), ("r-old", "Tony_Blair", 40)):
        face = FaceRecord(0, 0.99, 80.0, top1_identity=name, predicted=name, decision="known")
        log.append(RequestRecord(request_id, "recognize", 200, 5.0, faces=[face], ts=now - age_days * 86400))
    return log


def test_cache_drops_erased_pruned_and_old_entries(tmp_path: Path) -> None:
    now = time.time()
    log = _log(tmp_path / "requests.sqlite", now)
    rng = np.random.default_rng(0)
    vectors = {r: rng.normal(size=(1, 512)).astype(np.float32) for r in ("r-gone", "r-stays", "r-old")}
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        cache.cache_embeddings("v1", vectors)
        assert set(cache.cached_embeddings("v1", list(vectors))) == set(vectors)

        assert log.forget("Colin_Powell")["requests"] == 1
        assert log.prune(now) == 1  # r-old: past the 30 days' retention
        log.close()
        config = MonitorConfig(request_log=tmp_path / "requests.sqlite", embedding_cache_max_age="7d")
        _prune_cache(config, cache, now)
        left = cache.cached_embeddings("v1", list(vectors))
        assert set(left) == {"r-stays"} and np.array_equal(left["r-stays"], vectors["r-stays"])

        _prune_cache(config, cache, now + 8 * 86400)  # a week later the entry is too old, though its request is not
        assert cache.cached_embeddings("v1", list(vectors)) == {}


def test_without_a_readable_log_only_the_age_applies(tmp_path: Path) -> None:
    now = time.time()
    with EmbeddingCache(tmp_path / "cache.sqlite") as cache:
        cache.cache_embeddings("v1", {"r1": np.ones((2, 512), np.float32)})
        config = MonitorConfig(request_log=tmp_path / "missing.sqlite", embedding_cache_max_age=3600)
        _prune_cache(config, cache, now)
        assert set(cache.cached_embeddings("v1", ["r1"])) == {"r1"}
        _prune_cache(config, cache, now + 7200)
        assert cache.cached_embeddings("v1", ["r1"]) == {}


def test_entries_from_before_the_age_column_are_dropped(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "cache.sqlite"
    with sqlite3.connect(path) as db:  # a cache file written before entries had a time
        db.execute("CREATE TABLE embeddings (model TEXT NOT NULL, request_id TEXT NOT NULL, vectors BLOB NOT NULL, "
                   "PRIMARY KEY (model, request_id))")  # fmt: skip
        db.execute("INSERT INTO embeddings VALUES ('v1', 'r1', ?)", (np.ones((1, 512), np.float32).tobytes(),))
    with EmbeddingCache(path) as cache:
        assert cache.prune(86400) == 1 and cache.cached_embeddings("v1", ["r1"]) == {}
