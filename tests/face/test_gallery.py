"""The gallery: vectorised 1:N search, 'unknown' below the threshold, no-pickle storage, atomic saves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceops.errors import GalleryError, UnknownIdentity
from faceops.face.gallery import UNKNOWN, Gallery


def _unit(rng: np.random.Generator, n: int, dim: int = 512) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def gallery() -> tuple[Gallery, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    centres = {name: _unit(rng, 1)[0] for name in ["carol", "alice", "bob"]}
    g = Gallery("model-a")
    for name, centre in centres.items():
        noisy = centre + 0.3 * _unit(rng, 3) / np.sqrt(2)
        g.add(name, noisy, [f"{name}/{i}.jpg" for i in range(3)])
    return g, centres


def test_identify_known_unknown_and_top_k(gallery) -> None:
    g, centres = gallery
    rng = np.random.default_rng(1)
    stranger = _unit(rng, 1)[0]
    matches = g.identify(np.stack([centres["bob"], centres["alice"], stranger]), threshold=0.5, top_k=2)
    assert [m.identity for m in matches] == ["bob", "alice", UNKNOWN]
    assert matches[0].candidates[0][0] == "bob" and len(matches[0].candidates) == 2
    assert matches[0].score > 0.9 and matches[2].score < 0.3
    assert matches[0].candidates[0][1] >= matches[0].candidates[1][1]


def test_scores_are_the_best_embedding_per_identity(gallery) -> None:
    g, centres = gallery
    query = centres["carol"][None]
    scores, names = g.scores(query)
    assert names == ["alice", "bob", "carol"]
    brute = {n: max(float(query[0] @ e) for e in g._embeddings[g._labels == n]) for n in names}  # noqa: SLF001
    assert np.allclose(scores[0], [brute[n] for n in names], atol=1e-6)


def test_save_load_roundtrip_without_pickle(tmp_path: Path, gallery) -> None:
    g, centres = gallery
    path = tmp_path / "g.npz"
    g.save(path)
    with np.load(path, allow_pickle=False) as data:  # readable with pickle disabled
        assert set(data.files) == {"header", "embeddings", "labels", "sources"}
    loaded = Gallery.load(path)
    assert loaded.identities == {"alice": 3, "bob": 3, "carol": 3}
    assert loaded.sources("bob") == [f"bob/{i}.jpg" for i in range(3)]
    assert loaded.identify(centres["alice"][None], 0.5)[0].identity == "alice"


def test_remove_deletes_every_embedding(gallery) -> None:
    g, centres = gallery
    assert g.remove("bob") == 3
    assert "bob" not in g.identities and len(g) == 6
    assert g.identify(centres["bob"][None], 0.5)[0].identity == UNKNOWN
    with pytest.raises(UnknownIdentity, match="'bob' is not enrolled"):
        g.remove("bob")


def test_failed_save_keeps_the_old_file(tmp_path: Path, gallery, monkeypatch: pytest.MonkeyPatch) -> None:
    g, _ = gallery
    path = tmp_path / "g.npz"
    g.save(path)
    before = path.read_bytes()
    g.add("dave", _unit(np.random.default_rng(3), 2))

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        g.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.npz"], "no temporary file is left behind"


def test_bad_inputs(tmp_path: Path, gallery) -> None:
    g, _ = gallery
    with pytest.raises(GalleryError, match="invalid identity"):
        g.add(UNKNOWN, np.ones((1, 512)))
    with pytest.raises(GalleryError, match="size"):
        g.add("eve", np.ones((1, 128)))
    with pytest.raises(GalleryError, match="NaN"):
        g.add("eve", np.full((1, 512), np.nan))
    with pytest.raises(GalleryError, match="empty"):
        Gallery("m").identify(np.ones((1, 512)), 0.5)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(GalleryError, match="not a FaceOps gallery"):
        Gallery.load(junk)
    with pytest.raises(GalleryError, match="not found"):
        Gallery.load(tmp_path / "missing.npz")


def test_a_gallery_of_another_model_is_refused(tmp_path: Path, gallery) -> None:
    g, _ = gallery
    g.save(tmp_path / "g.npz")
    with pytest.raises(GalleryError, match="re-enrol"):
        Gallery.open_or_create(tmp_path / "g.npz", "model-b")
    assert len(Gallery.open_or_create(tmp_path / "new.npz", "model-b")) == 0
