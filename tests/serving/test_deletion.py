"""Deletion reaches everything: enrol real LFW people, recognise, give feedback, delete, then search every store.

The stores searched: the gallery file(s), the enrolment photos, the request log's tables and raw database files
(stored images, logged embeddings, feedback, error texts), and with PostgreSQL every table of the database. Each
is searched for the name and for the person's embeddings (vectors compared, not just rows counted). An unknown
identity is 404 and changes nothing. The command line erases from a stopped service's state folder, gallery files
and (``--purge-data``) future data imports.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from faceops.serving.app import create_app
from fastapi.testclient import TestClient

from faceops.cli import cli
from faceops.data.denylist import DenyList
from faceops.data.ingest import build_dataset
from faceops.face.gallery import Gallery
from faceops.telemetry.erasure import DeletionRecord
from tests.serving.serving_helpers import make_settings

GONE, STAYS = "Colin_Powell", "Tony_Blair"


def _upload(path: Path) -> dict:
    return {"image": (path.name, path.read_bytes())}


def _enrol(client: TestClient, headers: dict, name: str, photos: list[Path]) -> None:
    files = [("images", (p.name, p.read_bytes())) for p in photos]
    r = client.post("/v1/identities", data={"identity": name}, files=files, headers=headers)
    assert r.status_code == 201, r.text


def _traffic(client: TestClient, headers: dict, people: dict, stranger: Path) -> dict[str, str]:
    """Recognise both people, detect GONE (a face the log does not name), feedback naming GONE on a stranger."""
    ids = {}
    for key, path, route in (
        ("gone", people[GONE][2], "/v1/recognize"),
        ("stays", people[STAYS][2], "/v1/recognize"),
        ("unnamed", people[GONE][3], "/v1/detect"),
        ("stranger", stranger, "/v1/recognize"),
    ):
        r = client.post(route, files=_upload(path), headers=headers)
        assert r.status_code == 200, r.text
        ids[key] = r.json()["request_id"]
    assert client.post("/v1/recognize", files=_upload(people[GONE][2]), headers=headers).json()["faces"][0]["identity"] == GONE
    for key, truth in (("gone", GONE), ("stranger", GONE), ("stays", STAYS)):
        r = client.post("/v1/feedback", headers=headers, json={"request_id": ids[key], "truth": truth})
        assert r.status_code == 200, r.text
    return ids


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.atleast_2d(np.asarray(v, dtype=np.float32))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _max_similarity(vectors: list[np.ndarray], person: np.ndarray) -> float:
    if not vectors:
        return -1.0
    return float((_unit(np.concatenate([_unit(v) for v in vectors])) @ _unit(person).T).max())


def _log_vectors(rows: list[tuple]) -> list[np.ndarray]:
    return [np.frombuffer(bytes(b), dtype=np.float16).astype(np.float32) for (b,) in rows if b is not None]


def _snapshot(state: Path) -> dict[str, str]:
    """Every file of the state folder (but the request log, checked by rows) by content hash."""
    return {
        str(p.relative_to(state)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(state.rglob("*"))
        if p.is_file() and not p.name.startswith("requests.sqlite")
    }


def _log_rows(db: sqlite3.Connection) -> dict[str, list[tuple]]:
    return {
        "requests": db.execute("SELECT * FROM requests WHERE endpoint != 'delete_identity' ORDER BY request_id").fetchall(),
        "faces": db.execute("SELECT * FROM faces ORDER BY request_id, face_index").fetchall(),
        "feedback": db.execute("SELECT * FROM feedback ORDER BY request_id, ts").fetchall(),
        "deletions": db.execute("SELECT * FROM deletions").fetchall(),
    }


def _check_log_clean(db: sqlite3.Connection, name: str, person: np.ndarray, photos: list[Path], threshold: float) -> None:
    """No row names ``name``; none of ``person``'s vectors is left (a weak model scores other people's faces near
    the threshold too, so those recognised as someone else are compared for identity, the unrecognised ones
    against the threshold); no stored image is one of ``photos``."""
    for table in ("requests", "faces", "feedback", "deletions"):
        columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
        for row in db.execute(f"SELECT * FROM {table}").fetchall():
            for column, value in zip(columns, row, strict=True):
                text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                assert name not in text, f"{table}.{column} still names {name}"
    embeddings = _log_vectors(db.execute("SELECT embedding FROM faces").fetchall())
    assert _max_similarity(embeddings, person) < 0.99
    unrecognised = db.execute("SELECT embedding FROM faces WHERE predicted IS NULL OR predicted = 'unknown'").fetchall()
    assert _max_similarity(_log_vectors(unrecognised), person) < threshold
    images = {hashlib.sha256(bytes(b)).hexdigest() for (b,) in db.execute("SELECT image FROM requests WHERE image IS NOT NULL")}
    assert not images & {hashlib.sha256(p.read_bytes()).hexdigest() for p in photos}


def test_delete_reaches_every_store_and_unknown_changes_nothing(bundle_dir, api_key, key_header, people, stranger, tmp_path) -> None:
    state = tmp_path / "state"
    settings = make_settings(bundle_dir, state, api_key, log_store_images=True, log_embeddings=True, rate_limit_per_minute=0)
    with TestClient(create_app(settings)) as client:
        _enrol(client, key_header, GONE, people[GONE][:2])
        _enrol(client, key_header, STAYS, people[STAYS][:2])
        ids = _traffic(client, key_header, people, stranger)
        threshold = client.app.state.ctx.service.state.model.threshold
        gallery = Gallery.load(state / "gallery.npz")
        enrolled = _unit(np.stack([v for v, label in zip(*_gallery_rows(gallery), strict=True) if label == GONE]))
        with sqlite3.connect(settings.log_path) as db:  # the person's logged faces, for the vector search below
            person = np.concatenate([enrolled, _unit(np.stack(_log_vectors(db.execute(
                "SELECT f.embedding FROM faces f WHERE f.request_id IN (?, ?)", (ids["gone"], ids["unnamed"])
            ).fetchall())))])  # fmt: skip
            before = _log_rows(db)
        files_before = _snapshot(state)

        ghost = client.delete("/v1/identities/Ghost", headers=key_header)
        assert ghost.status_code == 404 and "Ghost" in ghost.json()["detail"], ghost.text
        assert _snapshot(state) == files_before
        with sqlite3.connect(settings.log_path) as db:
            assert _log_rows(db) == before  # nothing erased, no audit record

        gone = client.delete(f"/v1/identities/{GONE}", headers=key_header)
        assert gone.status_code == 200, gone.text
        removed = gone.json()["removed"]
        assert removed["gallery_embeddings"] == 2 and removed["photos"] == 2
        # the recognised request (twice), the detect request (found by its embedding), the stranger's (feedback)
        assert removed["log_requests"] == 4 and removed["log_feedback"] == 2 and removed["log_images"] == 4
        service = client.app.state.ctx.service  # searched directly: a new request would log the face anew
        assert all(c[0] != GONE for m in service.identify(enrolled, service.state) for c in m.candidates)
        assert client.get(f"/v1/identities/{STAYS}", headers=key_header).status_code == 200

    # every store, searched for the name and the person's embeddings
    after = Gallery.load(state / "gallery.npz")
    vectors, labels = _gallery_rows(after)
    assert GONE not in set(labels) and STAYS in set(labels)
    assert _max_similarity([vectors], enrolled) < 0.99  # the enrolled vectors themselves are gone
    assert not (state / "enrolled" / GONE).exists()
    photo_hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in people[GONE]}
    assert not photo_hashes & {hashlib.sha256(p.read_bytes()).hexdigest() for p in state.rglob("*") if p.is_file()}
    with sqlite3.connect(settings.log_path) as db:
        _check_log_clean(db, GONE, person, people[GONE], threshold)
        assert db.execute("SELECT COUNT(*) FROM requests WHERE request_id = ?", (ids["stays"],)).fetchone()[0] == 1
        records = [DeletionRecord.from_row(r) for r in db.execute("SELECT ts, actor, salt, identity_hash, removed FROM deletions")]
    assert len(records) == 1 and records[0].names(GONE) and not records[0].names(STAYS)
    assert records[0].actor == "tests" and records[0].removed == removed
    for raw in state.glob("requests.sqlite*"):  # the files' bytes: no freed page or WAL frame keeps the name
        assert GONE.encode() not in raw.read_bytes(), raw

    # the command line, on the stopped service's state: erase the other person the same way
    result = CliRunner().invoke(cli, ["identities", "delete", STAYS, "--state-dir", str(state), "--json"])
    assert result.exit_code == 0, result.output
    assert '"gallery_embeddings": 2' in result.output and '"log_requests": 1' in result.output
    assert STAYS not in Gallery.load(state / "gallery.npz").identities and not (state / "enrolled" / STAYS).exists()
    with sqlite3.connect(settings.log_path) as db:
        _check_log_clean(db, STAYS, _unit(np.stack([v for v, label in zip(vectors, labels, strict=True) if label == STAYS])),
                         people[STAYS], threshold)  # fmt: skip
        actors = [r[0] for r in db.execute("SELECT actor FROM deletions ORDER BY id")]
    assert actors[0] == "tests" and actors[1].startswith("cli:")
    unknown = CliRunner().invoke(cli, ["identities", "delete", STAYS, "--state-dir", str(state)])
    assert unknown.exit_code == 1 and "not enrolled" in unknown.output


def _gallery_rows(gallery: Gallery) -> tuple[np.ndarray, list[str]]:
    """Every live vector of a gallery with its label, through what the file holds."""
    vectors, labels = [], []
    for name in gallery.identities:
        from faceops.telemetry.erasure import likeness_of

        rows = likeness_of(gallery, name, 0.0).vectors
        vectors.append(rows)
        labels += [name] * len(rows)
    return (np.concatenate(vectors) if vectors else np.zeros((0, 512), np.float32)), labels


def test_cli_gallery_file_and_purge_data(recognizer, lfw, tmp_path) -> None:
    from faceops.face.enrol import enrol

    gallery_path = tmp_path / "gallery.npz"
    gallery = Gallery(recognizer.model_id)
    enrol(recognizer, gallery, [(n, p) for n in (GONE, STAYS) for p in sorted((lfw / n).glob("*.jpg"))[:2]])
    gallery.save(gallery_path)
    before = gallery_path.read_bytes()

    unknown = CliRunner().invoke(cli, ["identities", "delete", "Ghost", "--gallery", str(gallery_path)])
    assert unknown.exit_code == 1 and "not enrolled" in unknown.output
    assert gallery_path.read_bytes() == before and not (tmp_path / "deletions.jsonl").exists()

    result = CliRunner().invoke(
        cli, ["identities", "delete", "Colin Powell".replace(" ", "_"), "--gallery", str(gallery_path), "--purge-data",
              "--data-root", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Gallery.load(gallery_path).identities == {STAYS: 2}
    audit = (tmp_path / "deletions.jsonl").read_text()
    assert GONE not in audit and '"deny_listed": 1' in audit and '"gallery_embeddings": 2' in audit
    deny = (tmp_path / "deleted-identities.txt").read_text()
    assert GONE not in deny and DenyList(tmp_path).denies("Colin Powell") and not DenyList(tmp_path).denies(STAYS)

    # the next data version leaves the person out (and says how many, not who)
    src = tmp_path / "source"
    for name in (GONE, STAYS, "Donald_Rumsfeld"):
        (src / name).mkdir(parents=True)
        for p in sorted((lfw / name).glob("*.jpg"))[:2]:
            (src / name / p.name).write_bytes(p.read_bytes())
    built = build_dataset(src, tmp_path / "data", denied=DenyList(tmp_path).denies)
    assert {r.identity for r in built.rows} == {STAYS, "Donald_Rumsfeld"}
    notes = [p for p in built.problems if p.kind == "deleted_identity"]
    assert len(notes) == 1 and GONE not in notes[0].message and "1 identit" in notes[0].message


@pytest.mark.integration
def test_delete_reaches_every_postgres_table(postgres, bundle_dir, api_key, key_header, people, stranger, tmp_path) -> None:
    import psycopg

    url = postgres.new_database()
    settings = make_settings(bundle_dir, tmp_path / "state", api_key, database_url=url, log_store_images=True,
                             log_embeddings=True, rate_limit_per_minute=0)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        _enrol(client, key_header, GONE, people[GONE][:2])
        _enrol(client, key_header, STAYS, people[STAYS][:2])
        _traffic(client, key_header, people, stranger)
        with psycopg.connect(url) as db:
            person = _unit(np.stack([np.frombuffer(v, np.float32) for (v,) in db.execute(
                "SELECT vector FROM gallery_embeddings WHERE identity = %s", (GONE,)).fetchall()]))  # fmt: skip
            counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("requests", "gallery_photos")}
        assert client.delete("/v1/identities/Ghost", headers=key_header).status_code == 404
        with psycopg.connect(url) as db:
            now = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in counts}
            assert now == counts | {"requests": counts["requests"] + 1}  # the 404 itself is logged, like every request
            assert db.execute("SELECT COUNT(*) FROM deletions").fetchone()[0] == 0
        gone = client.delete(f"/v1/identities/{GONE}", headers=key_header)
        assert gone.status_code == 200 and gone.json()["removed"]["photos"] == 2, gone.text
        assert gone.json()["removed"]["log_requests"] == 4

    with psycopg.connect(url) as db:
        tables = [r[0] for r in db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert {"gallery_changes", "gallery_embeddings", "requests", "faces", "feedback", "deletions"} <= set(tables)
        for table in tables:
            for row in db.execute(f"SELECT * FROM {table}").fetchall():
                text = " ".join(bytes(v).decode("latin-1") if isinstance(v, (bytes, memoryview)) else str(v) for v in row)
                assert GONE not in text, f"{table} still names {GONE}: {text[:200]}"
        stored = db.execute("SELECT vector FROM gallery_embeddings WHERE vector IS NOT NULL").fetchall()
        vectors = [np.frombuffer(v, np.float32) for (v,) in stored]
        assert _max_similarity(vectors, person) < 0.99
        logged = _log_vectors(db.execute("SELECT embedding FROM faces").fetchall())
        assert _max_similarity(logged, person) < 0.99
        assert db.execute("SELECT COUNT(*) FROM gallery_identities WHERE name = %s", (STAYS,)).fetchone()[0] == 1
        (actor,) = db.execute("SELECT actor FROM deletions").fetchone()
        assert actor == "tests"
