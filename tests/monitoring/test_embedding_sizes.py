"""The monitor takes the embedding size from the model: 128-d (MobileFaceNet) and 512-d vectors alike."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from monitoring.state import EmbeddingCache
from monitoring.window import _embedding


def test_logged_embeddings_of_any_model_size_are_read_back() -> None:
    rng = np.random.default_rng(0)
    for dim in (128, 512):
        vector = rng.standard_normal(dim).astype(np.float16)
        assert np.array_equal(_embedding(vector.tobytes()), vector.astype(np.float32))
    legacy = rng.standard_normal(512).astype(np.float32)  # logs written before embeddings were float16
    assert np.array_equal(_embedding(legacy.tobytes()), legacy)
    assert _embedding(b"\x00" * 7) is None and _embedding(b"") is None and _embedding("text") is None


def test_the_embedding_cache_keeps_each_models_size(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    small = np.arange(2 * 128, dtype=np.float32).reshape(2, 128)
    large = np.ones((1, 512), dtype=np.float32)
    cache.cache_embeddings("mobilefacenet", {"r1": small, "r2": np.zeros((0, 128), np.float32)})
    cache.cache_embeddings("inception", {"r1": large})
    got = cache.cached_embeddings("mobilefacenet", ["r1", "r2"])
    assert np.array_equal(got["r1"], small) and got["r2"].shape[0] == 0
    assert np.array_equal(cache.cached_embeddings("inception", ["r1"])["r1"], large)
    cache._db.execute(  # vectors written by the release before: raw 512-d float32
        "INSERT INTO embeddings (model, request_id, vectors, ts) VALUES (?, ?, ?, ?)",
        ("old", "r9", np.full((2, 512), 3, np.float32).tobytes(), time.time()),
    )
    assert cache.cached_embeddings("old", ["r9"])["r9"].shape == (2, 512)
    cache.close()
