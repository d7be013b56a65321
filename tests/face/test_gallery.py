"""The gallery: vectorised 1:N search, 'unknown' below the threshold, no-pickle storage, atomic saves.

Small galleries search exactly: their answers must stay those of the plain exhaustive search FaceOps always did
(``_reference_identify`` below is that code), checked on real LFW embeddings.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from faceops.errors import GalleryError, UnknownIdentity
from faceops.face.gallery import UNKNOWN, Gallery, Match


def _unit(rng: np.random.Generator, n: int, dim: int = 512) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def gallery() -> tuple[Gallery, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    centres = {name: _unit(rng, 1)[0] for name in ["carol", "alice", "bob"]}
    g = Gallery("model-a")
    for name, centre in list(centres.items()):
        noisy = centre + 0.3 * _unit(rng, 3) / np.sqrt(2)
        g.add(name, noisy, [f"{name}/{i}.jpg" for i in range(3)])
        centres[f"{name}/enrolled"] = noisy
    return g, centres


def _reference_identify(
    embeddings: np.ndarray, labels: list[str], queries: np.ndarray, threshold: float, top_k: int
) -> tuple[np.ndarray, list[Match]]:
    """The exhaustive search as FaceOps did it before the index (normalise, sort by label, max per run)."""
    vectors = np.asarray(embeddings, dtype=np.float32)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    names_all = np.asarray(labels, dtype=str)
    order = np.argsort(names_all, kind="stable")
    vectors, names_all = vectors[order], names_all[order]
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    names, starts = np.unique(names_all, return_index=True)
    per_identity = np.maximum.reduceat(queries @ vectors.T, starts, axis=1)
    ranks = np.argsort(-per_identity, axis=1)[:, : min(top_k, len(names))]
    matches = []
    for row, top in zip(per_identity, ranks, strict=True):
        candidates = tuple((str(names[i]), float(row[i])) for i in top)
        matches.append(Match(candidates[0][0] if candidates[0][1] >= threshold else UNKNOWN, candidates[0][1], candidates))
    return per_identity, matches


@pytest.fixture(scope="module")
def lfw_embeddings(recognizer, lfw: Path) -> tuple[np.ndarray, list[str]]:
    """Real embeddings: up to 3 photos each of 12 LFW people with several photos, and 1 of 8 others."""
    people = [(p.name, sorted(p.glob("*.jpg"))) for p in sorted(lfw.iterdir()) if p.is_dir()]
    photos = [(name, jpg) for name, jpgs in [x for x in people if len(x[1]) >= 3][:12] for jpg in jpgs[:3]]
    photos += [(name, jpgs[0]) for name, jpgs in [x for x in people if len(x[1]) == 1][:8]]
    result = recognizer.embed_subjects([p for _, p in photos])
    ok = [i for i in range(len(photos)) if i not in result.errors]
    return result.embeddings[ok], [photos[i][0] for i in ok]


def test_exact_search_is_identical_to_the_plain_exhaustive_search_on_lfw(lfw_embeddings, tmp_path: Path) -> None:
    embeddings, labels = lfw_embeddings
    assert len(set(labels)) >= 12 and len(embeddings) >= 30
    enrolled = [int(i) for i in np.random.default_rng(3).permutation(len(labels)) if i % 3 != 1]  # arrival order
    probes = embeddings[[i for i in range(len(labels)) if i % 3 == 1]]
    g = Gallery("lfw")
    for i in enrolled:  # one photo per call, in an interleaved order, as enrolments arrive
        g.add(labels[i], embeddings[i][None], [f"{labels[i]}/{i}"])
    assert not g.uses_index
    for top_k in (1, 3, 50):
        ref_scores, ref = _reference_identify(embeddings[enrolled], [labels[i] for i in enrolled], probes, 0.4, top_k)
        assert g.identify(probes, 0.4, top_k) == ref  # the same Match objects: names, order, float scores
        scores, names = g.scores(probes)
        assert np.array_equal(scores, ref_scores) and names == sorted(set(labels[i] for i in enrolled))
    victim = labels[enrolled[0]]
    g.remove(victim)
    kept = [i for i in enrolled if labels[i] != victim]
    _, ref = _reference_identify(embeddings[kept], [labels[i] for i in kept], probes, 0.4, 3)
    assert g.identify(probes, 0.4, 3) == ref
    g.save(tmp_path / "g.npz")
    assert Gallery.load(tmp_path / "g.npz").identify(probes, 0.4, 3) == ref
    batch = Gallery("lfw")
    batch.add_batch([labels[i] for i in kept], embeddings[kept])
    assert batch.identify(probes, 0.4, 3) == ref


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
    enrolled = {n: centres[f"{n}/enrolled"] / np.linalg.norm(centres[f"{n}/enrolled"], axis=1, keepdims=True) for n in names}
    brute = {n: max(float(query[0] @ e) for e in enrolled[n]) for n in names}
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


def test_add_batch_and_deep_copies(gallery) -> None:
    g, centres = gallery
    twin = copy.deepcopy(g)
    twin.add_batch(["dave", "erin", "dave"], _unit(np.random.default_rng(5), 3), ["d/1", "e/1", "d/2"])
    assert twin.identities == {"alice": 3, "bob": 3, "carol": 3, "dave": 2, "erin": 1}
    assert twin.sources("dave") == ["d/1", "d/2"]
    assert g.identities == {"alice": 3, "bob": 3, "carol": 3}, "the original is untouched"
    with pytest.raises(GalleryError, match="one identity per embedding"):
        g.add_batch(["dave"], _unit(np.random.default_rng(5), 2))
    with pytest.raises(GalleryError, match="invalid identity"):
        g.add_batch(["dave", " "], _unit(np.random.default_rng(5), 2))
    assert len(g) == 9, "a refused batch adds nothing"


@pytest.mark.parametrize("exact_below", [10_000, 8], ids=["exact", "indexed"])
def test_embeddings_of_one_identity(exact_below: int) -> None:
    rng = np.random.default_rng(11)
    vectors = {name: 3.0 * _unit(rng, n) for name, n in [("alice", 3), ("bob", 2), ("carol", 4)]}
    g = Gallery("model-a", exact_below=exact_below)
    for name, rows in vectors.items():
        g.add(name, rows[:1])
    for name, rows in vectors.items():
        g.add(name, rows[1:])  # interleaved slots: the rows come back in enrolment order all the same
    assert g.uses_index == (exact_below == 8)
    for name, rows in vectors.items():
        got = g.embeddings_of(name)
        assert got.dtype == np.float32 and got.shape == rows.shape
        np.testing.assert_allclose(got, rows / 3.0, atol=1e-3 if g.uses_index else 1e-6)  # float16 when indexed
    got[:] = 0
    assert np.abs(g.embeddings_of("carol")).sum() > 0, "a copy, not a view of the gallery"
    g.remove("bob")
    with pytest.raises(UnknownIdentity, match="bob"):
        g.embeddings_of("bob")
    with pytest.raises(UnknownIdentity, match="nobody"):
        g.embeddings_of("nobody")


# -- changes in place, journalled --------------------------------------------------------------------------------
def _same(a: Gallery, b: Gallery) -> None:
    assert a.identities == b.identities
    for name in a.identities:
        assert a.sources(name) == b.sources(name)
        np.testing.assert_allclose(a.embeddings_of(name), b.embeddings_of(name), atol=1e-3)


@pytest.mark.parametrize("exact_below", [10_000, 8])
def test_changes_go_to_the_journal_not_the_file_and_a_load_replays_them(gallery, tmp_path: Path, exact_below: int,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    g, centres = gallery
    g.exact_below = exact_below
    g.add("dave", centres["alice"][None] + 0.1, ["d/1"])  # the index starts here when exact_below is 8
    path = tmp_path / "g.npz"
    g.save(path)
    before = path.read_bytes()
    journal = path.with_name("g.npz.journal")
    assert not journal.exists()
    rng = np.random.default_rng(3)
    g.add("erin", _unit(rng, 2), ["e/1", "e/2"], journal=path)
    g.add("alice", _unit(rng, 1), ["a/9"], journal=path)
    assert g.remove("bob", journal=path) == 3
    assert path.read_bytes() == before, "a change rewrote the gallery file"
    assert journal.stat().st_size == g.journal_bytes > 0
    with caplog.at_level("WARNING"):
        loaded = Gallery.load(path, exact_below=exact_below)
    assert not caplog.records, [r.getMessage() for r in caplog.records]  # the index file was reused, not rebuilt
    assert "bob" not in loaded and loaded.count("alice") == 4 and loaded.sources("erin") == ["e/1", "e/2"]
    _same(g, loaded)
    assert loaded.uses_index == (exact_below == 8)
    loaded.add("fay", _unit(rng, 1), ["f/1"], journal=path)  # the loaded gallery goes on with the same journal
    assert Gallery.load(path, exact_below=exact_below).count("fay") == 1
    loaded.save(path)  # a compaction: the journal is folded into the file
    assert not journal.exists() and loaded.journal_bytes == 0
    _same(loaded, Gallery.load(path, exact_below=exact_below))


def test_a_torn_last_record_is_cut_off_and_a_stale_journal_ignored(gallery, tmp_path: Path) -> None:
    g, centres = gallery
    path = tmp_path / "g.npz"
    rng = np.random.default_rng(5)
    g.add("dave", _unit(rng, 2), ["d/1", "d/2"], journal=path)  # not saved before: saved first, then journalled
    assert path.is_file() and Gallery.load(path).count("dave") == 2
    journal = path.with_name("g.npz.journal")
    whole = journal.read_bytes()
    g.add("erin", _unit(rng, 1), ["e/1"], journal=path)
    journal.write_bytes(journal.read_bytes()[:-7])  # a crash in the middle of the second append
    loaded = Gallery.load(path)
    assert loaded.count("dave") == 2 and "erin" not in loaded
    assert journal.read_bytes() == whole  # cut at the last whole record, so appends go on from there
    loaded.add("fay", _unit(rng, 1), ["f/1"], journal=path)
    assert Gallery.load(path).identities == loaded.identities
    stale = journal.read_bytes()
    loaded.save(path)  # a crash between writing the file and deleting the journal leaves the old journal
    journal.write_bytes(stale)
    again = Gallery.load(path)
    assert again.count("dave") == 2 and again.count("fay") == 1, "a journal already in the file was replayed"
    assert not journal.exists()


def test_a_search_that_ends_after_a_deletion_never_names_it_while_the_gallery_grows() -> None:
    rng = np.random.default_rng(11)
    centres = _unit(rng, 300, dim=128)
    g = Gallery("model-a", exact_below=200)
    g.add_batch([f"p{i:03d}" for i in range(300) for _ in range(2)], np.repeat(centres, 2, axis=0))
    stop, late = threading.Event(), []
    removed: dict[str, float] = {}

    def search(offset: int) -> None:
        q = offset
        while not stop.is_set():
            names = {n for n, _ in g.identify(centres[q % 60], 0.0, 5)[0].candidates}
            ended = time.perf_counter()
            late.extend(n for n in names if n in removed and removed[n] < ended)
            q += 7

    workers = [threading.Thread(target=search, args=(k,)) for k in range(2)]
    for worker in workers:
        worker.start()
    try:
        for i in range(60):
            g.add(f"new{i:03d}", _unit(rng, 8, dim=128))  # the buffers grow between deletions
            assert g.remove(f"p{i:03d}") == 2
            removed[f"p{i:03d}"] = time.perf_counter()
            time.sleep(0.002)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not late, f"searches that ended after the deletion named {sorted(set(late))}"


def test_a_search_that_keeps_losing_the_race_with_deletions_ends_holding_the_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every search's best answer is removed by another thread before the search checks it: the retries end, and
    the last search, run holding the lock, names no identity removed before it returned."""
    rng = np.random.default_rng(5)
    centres = _unit(rng, 20, dim=64)
    g = Gallery("model-a")
    g.add_batch([f"p{i:02d}" for i in range(20)], centres)
    searches, removed = [], []
    original = g._identify

    def racing(*args: object) -> list[Match]:
        matches = original(*args)
        searches.append(matches[0].identity)
        remover = threading.Thread(target=lambda name=matches[0].identity: removed.append((name, g.remove(name))))
        remover.start()
        remover.join(timeout=0.5)  # returns at once, unless this search holds the lock
        return matches

    monkeypatch.setattr(g, "_identify", racing)
    query = centres[:5].mean(axis=0)
    match = g.identify(query, 0.0, top_k=3)[0]
    assert len(searches) == 4, searches  # three lost races, then the search under the lock
    done = [name for name, count in removed if count]
    assert len(done) == 3 and not {n for n, _ in match.candidates} & set(done), (match, done)
    for _ in range(50):  # the fourth removal waited for the lock and runs once the search has returned
        if len(removed) == 4:
            break
        time.sleep(0.05)
    assert len(removed) == 4 and removed[3] == (match.identity, 1)
