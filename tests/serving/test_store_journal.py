"""The embedded store changes its gallery in place and durably: a journal next to ``gallery.npz``, not a rewrite.

A million-face gallery must not be copied or rewritten per enrolment (issue 15): the store appends each change to
``gallery.npz.journal`` (fsync'ed) and changes the one gallery the service searches. A new store on the same folder
(a restart) reads the file and replays the journal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faceops.serving.store import EmbeddedStore, IdentityExists

MODEL = "model-a"


def _vectors(seed: int, n: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_enrolments_and_deletions_are_journalled_in_place_and_survive_a_restart(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, keep_photos=True)
    served = store.gallery(MODEL)
    store.promote(MODEL)
    file = tmp_path / "gallery.npz"
    journal = tmp_path / "gallery.npz.journal"
    store.enroll("alice", new=True, model_id=MODEL, photos=[b"a1", b"a2"], embeddings=_vectors(1, 2), keep=True)
    before = file.read_bytes()
    sources = store.enroll("bob", new=True, model_id=MODEL, photos=[b"b1"], embeddings=_vectors(2, 1), keep=True)
    store.enroll("alice", new=False, model_id=MODEL, photos=[b"a3"], embeddings=_vectors(3, 1), keep=True)
    with pytest.raises(IdentityExists):
        store.enroll("bob", new=True, model_id=MODEL, photos=[b"b2"], embeddings=_vectors(4, 1), keep=True)
    assert file.read_bytes() == before, "an enrolment rewrote gallery.npz"
    assert journal.stat().st_size > 0
    assert store.gallery(MODEL) is served and served.identities == {"alice": 3, "bob": 1}  # the same gallery
    assert store.delete("alice") == {"embeddings": 3, "photos": 3}
    assert "alice" not in served and file.read_bytes() == before

    restarted = EmbeddedStore(tmp_path, keep_photos=True)
    gallery = restarted.gallery(MODEL)
    assert gallery.identities == {"bob": 1} and gallery.sources("bob") == sources
    np.testing.assert_allclose(gallery.embeddings_of("bob"), _vectors(2, 1), atol=1e-6)
    assert restarted.count_missing(MODEL) == (0, 1)  # bob's photo has its embedding: nothing to re-embed
    restarted.promote(MODEL)  # a short journal is not folded in at start
    assert file.read_bytes() == before and journal.is_file()
