"""State that heals, and state that lasts.

A damaged ``gallery.npz`` (truncated, garbage, empty, wrong arrays, pickled objects) or ``requests.sqlite``
(garbage, truncated, a corrupted page) never stops the service: the file is kept aside, the gallery rebuilt from
the stored enrolment photos or a new log started, and ``/ready`` says so. And across ``kill -9`` of a real
``faceops serve`` under 4 concurrent clients, no acknowledged request row or enrolment is lost.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from faceops.serving.app import create_app
from faceops.serving.security import hash_key
from fastapi.testclient import TestClient

from faceops.face.gallery import Gallery
from faceops.telemetry.requestlog import RequestLog, RequestRecord
from tests.serving.serving_helpers import free_port, make_settings, wait_until

ENROLLED = {"Colin_Powell": 2, "Tony_Blair": 2}
GARBAGE = bytes(range(256)) * 64


@pytest.fixture(scope="module")
def seeded(bundle_dir, api_key, people, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """A state folder as a running service leaves it: two identities enrolled (photos kept), a request log of
    several pages."""
    state = tmp_path_factory.mktemp("seeded")
    with TestClient(create_app(make_settings(bundle_dir, state, api_key))) as client:
        for name, count in ENROLLED.items():
            r = client.post(
                "/v1/identities",
                data={"identity": name},
                headers={"X-API-Key": api_key},
                files=[("images", (p.name, p.read_bytes())) for p in people[name][:count]],
            )
            assert r.status_code == 201, r.text
    log = RequestLog(state / "requests.sqlite")
    for i in range(300):
        log.append(RequestRecord(f"seed{i}", "detect", 200, 5.0, model_version="seed"))
    log.close()
    return state


def _npz(**arrays: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


_HEADER = np.array('{"format": 1, "model_id": "m"}')
GALLERY_DAMAGE = {
    "truncated": lambda good: good[: len(good) // 2],
    "garbage": lambda good: GARBAGE,
    "empty": lambda good: b"",
    "wrong arrays": lambda good: _npz(
        header=_HEADER, embeddings=np.zeros((3, 512), np.float32), labels=np.array(["a"]), sources=np.array([""])
    ),
    "pickled objects": lambda good: _npz(
        header=_HEADER, embeddings=np.array([None, None]), labels=np.array(["a", "b"]), sources=np.array(["", ""])
    ),
}


def _corrupt_page(good: bytes) -> bytes:
    return good[:4096] + b"\xaa" * 4096 + good[8192:]


LOG_DAMAGE = {
    "garbage": lambda good: GARBAGE,
    "truncated": lambda good: good[: len(good) // 2],
    "corrupted page": _corrupt_page,
}


def _state(seeded: Path, where: Path, name: str, damage) -> tuple[Path, bytes]:  # type: ignore[no-untyped-def]
    state = Path(shutil.copytree(seeded, where / "state"))
    damaged = damage((state / name).read_bytes())
    (state / name).write_bytes(damaged)
    return state, damaged


def _repairs_metric(client, headers) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """``faceops_state_repairs`` by kind, as Prometheus scrapes it (what an alert rule fires on)."""
    text = client.get("/metrics", headers=headers).text
    return {
        line.split('kind="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("faceops_state_repairs{")
    }


def _one_repair(ready: dict, name: str, damaged: bytes) -> dict:
    assert len(ready["alerts"]) == 1 and name in ready["alerts"][0], ready
    repair = ready["repairs"][0]
    kept = Path(repair["moved_to"])
    assert kept.name.startswith(f"{name}.damaged-") and kept.read_bytes() == damaged  # kept, as it was
    return repair


@pytest.mark.parametrize("kind", list(GALLERY_DAMAGE))
def test_a_damaged_gallery_is_kept_aside_and_rebuilt(
    kind, seeded, bundle_dir, api_key, people, tmp_path, caplog
) -> None:
    state, damaged = _state(seeded, tmp_path, "gallery.npz", GALLERY_DAMAGE[kind])
    headers = {"X-API-Key": api_key}
    with TestClient(create_app(make_settings(bundle_dir, state, api_key))) as client:
        ready = client.get("/ready", headers=headers)
        assert ready.status_code == 200, ready.text
        repair = _one_repair(ready.json(), "gallery.npz", damaged)
        assert "rebuilt from the stored enrolment photos" in repair["action"]
        assert _repairs_metric(client, headers) == {"gallery": 1.0, "request_log": 0.0}
        assert ready.json()["gallery"] == {"identities": 2, "embeddings": sum(ENROLLED.values())}
        photo = people["Colin_Powell"][3]
        r = client.post("/v1/recognize", files={"image": (photo.name, photo.read_bytes())}, headers=headers)
        assert r.status_code == 200 and r.json()["faces"][0]["identity"] == "Colin_Powell", r.text
    assert repair["moved_to"] in caplog.text and "gallery" in caplog.text  # named in the log too
    assert Gallery.load(state / "gallery.npz").identities == ENROLLED  # the rebuilt one was saved


@pytest.mark.parametrize("kind", list(LOG_DAMAGE))
def test_a_damaged_request_log_is_kept_aside_and_a_new_one_started(
    kind, seeded, bundle_dir, api_key, no_face_jpeg, tmp_path, caplog
) -> None:
    state, damaged = _state(seeded, tmp_path, "requests.sqlite", LOG_DAMAGE[kind])
    headers = {"X-API-Key": api_key}
    with TestClient(create_app(make_settings(bundle_dir, state, api_key))) as client:
        ready = client.get("/ready", headers=headers)
        assert ready.status_code == 200, ready.text
        repair = _one_repair(ready.json(), "requests.sqlite", damaged)
        assert "new, empty request log" in repair["action"]
        assert _repairs_metric(client, headers) == {"gallery": 0.0, "request_log": 1.0}
        assert ready.json()["gallery"]["identities"] == 2  # the gallery was fine and untouched
        r = client.post("/v1/detect", files={"image": ("x.jpg", no_face_jpeg)}, headers=headers)
        assert r.status_code == 200, r.text
    assert "request log" in caplog.text and repair["moved_to"] in caplog.text
    with sqlite3.connect(state / "requests.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT request_id FROM requests").fetchall() == [(r.json()["request_id"],)]


def test_a_sound_state_raises_no_alert(seeded, bundle_dir, api_key, tmp_path) -> None:
    state = Path(shutil.copytree(seeded, tmp_path / "state"))
    with TestClient(create_app(make_settings(bundle_dir, state, api_key))) as client:
        ready = client.get("/ready", headers={"X-API-Key": api_key}).json()
        assert _repairs_metric(client, {"X-API-Key": api_key}) == {"gallery": 0.0, "request_log": 0.0}
    assert ready["alerts"] == [] and ready["repairs"] == [] and ready["gallery"]["identities"] == 2
    assert sorted(p.name for p in state.iterdir() if ".damaged-" in p.name) == []


# -- durability: kill -9 under load ----------------------------------------------------------------------------
@pytest.mark.integration
def test_kill_9_under_4_clients_loses_no_acknowledged_row_or_enrolment(
    bundle_dir, api_key, people, tmp_path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # the real command also starts on damaged state files (it used to exit with code 3)
    (state / "gallery.npz").write_bytes(GARBAGE)
    (state / "requests.sqlite").write_bytes(GARBAGE)
    keys = tmp_path / "keys.txt"
    keys.write_text(f"tests:{hash_key(api_key)}\n")
    port = free_port()
    url, headers = f"http://127.0.0.1:{port}", {"X-API-Key": api_key}
    with (tmp_path / "serve.log").open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("faceops")), "serve", "--bundle", str(bundle_dir),
             "--state-dir", str(state), "--api-keys-file", str(keys), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "FACEOPS_SERVE_RATE_LIMIT_PER_MINUTE": "0"},
        )  # fmt: skip
    try:
        ready = wait_until(lambda: _get(f"{url}/ready", headers), 300, "faceops serve to be ready")
        assert proc.poll() is None and len(ready["alerts"]) == 2, ready
        rows: list[str] = []  # request ids the service acknowledged (200)
        enrolled: list[str] = []  # identities the service acknowledged (201)
        stop = threading.Event()
        query = people["Donald_Rumsfeld"][3].read_bytes()
        faces = [p.read_bytes() for p in people["Gerhard_Schroeder"]]

        def recognize() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        r = session.post(f"{url}/v1/recognize", files={"image": ("q.jpg", query)}, headers=headers)
                    except requests.RequestException:
                        return
                    if r.status_code == 200:
                        rows.append(r.json()["request_id"])

        def enrol(worker: int) -> None:
            n = 0
            with requests.Session() as session:
                while not stop.is_set():
                    name = f"person_{worker}_{n}"
                    try:
                        r = session.post(
                            f"{url}/v1/identities",
                            data={"identity": name},
                            files=[("images", ("f.jpg", faces[n % len(faces)]))],
                            headers=headers,
                        )
                    except requests.RequestException:
                        return
                    if r.status_code == 201:
                        enrolled.append(name)
                    n += 1

        clients = [threading.Thread(target=recognize) for _ in range(2)]
        clients += [threading.Thread(target=enrol, args=(w,)) for w in range(2)]
        for thread in clients:
            thread.start()
        wait_until(lambda: len(rows) >= 10 and len(enrolled) >= 4, 300, "acknowledged requests and enrolments")
        os.kill(proc.pid, signal.SIGKILL)  # with requests in flight
        proc.wait(timeout=30)
        stop.set()
        for thread in clients:
            thread.join(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    with sqlite3.connect(state / "requests.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        logged = {r[0] for r in db.execute("SELECT request_id FROM requests")}
    assert set(rows) <= logged, f"{len(set(rows) - logged)} of {len(rows)} acknowledged rows lost"
    gallery = Gallery.load(state / "gallery.npz")
    assert set(enrolled) <= set(gallery.identities), f"lost enrolments: {set(enrolled) - set(gallery.identities)}"
    assert all((state / "enrolled" / name).is_dir() for name in enrolled)


def _get(url: str, headers: dict[str, str]) -> dict | None:
    try:
        r = requests.get(url, headers=headers, timeout=5)
    except requests.RequestException:
        return None
    return r.json() if r.status_code == 200 else None
