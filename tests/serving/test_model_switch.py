"""A champion with other weights: its gallery is built in the background from the stored photos while the old
model keeps answering, then the service switches; identities enrolled meanwhile are in both, deleted ones in
neither; progress is in /ready and the metrics; an interrupted build resumes. Two bundles of different model ids,
as in test_model_swap; both stores (files, and PostgreSQL on 127.0.0.1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from faceops.serving.app import create_app
from fastapi.testclient import TestClient

from faceops.face.gallery import Gallery
from tests.serving.serving_helpers import Hammer, make_settings, wait_until
from tests.serving.test_model_swap import _publish_retrained

pytestmark = pytest.mark.integration
FIRST = ("Colin_Powell", "Tony_Blair", "Donald_Rumsfeld")


def _setup(request, store: str, bundle_dir: Path, api_key: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("postgres").new_database() if store == "postgres" else None
    local = Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))
    settings = make_settings(
        local, tmp_path / "state", api_key, poll_seconds=0.3, sync_seconds=0.2, rebuild_batch=1,
        rate_limit_per_minute=0, database_url=url,
    )  # fmt: skip
    return local, settings


def _enrol(client, headers, name: str, photos: list[Path]):  # type: ignore[no-untyped-def]
    files = [("images", (p.name, p.read_bytes())) for p in photos]
    return client.post("/v1/identities", data={"identity": name}, files=files, headers=headers)


def _metric(client, headers, name: str) -> float:  # type: ignore[no-untyped-def]
    line = next(x for x in client.get("/metrics", headers=headers).text.splitlines() if x.startswith(name + " "))
    return float(line.split()[1])


@pytest.mark.parametrize("store", ["embedded", "postgres"])
def test_a_new_model_gets_its_gallery_in_the_background(store, request, bundle_dir, api_key, key_header, people, tmp_path) -> None:
    local, settings = _setup(request, store, bundle_dir, api_key, tmp_path)
    with TestClient(create_app(settings)) as client:
        old = client.get("/ready", headers=key_header).json()["model"]
        for name in FIRST:
            assert _enrol(client, key_header, name, people[name][:2]).status_code == 201
        query = people["Colin_Powell"][3].read_bytes()

        def record(r):  # type: ignore[no-untyped-def]
            body = r.json()
            return r.status_code, body.get("model_version"), [f["identity"] for f in body.get("faces", [])]

        send = lambda: client.post("/v1/recognize", files={"image": ("q.jpg", query)}, headers=key_header)  # noqa: E731
        with Hammer(send, record) as hammer:
            new_id = _publish_retrained(bundle_dir, local, 0.33)
            building = wait_until(lambda: (r := client.get("/ready", headers=key_header).json())["rebuild"] and r, 120, "the rebuild")
            assert building["model"]["version"] == old["version"]  # the old model keeps answering
            assert building["rebuild"]["model_id"].startswith(new_id) and building["rebuild"]["photos_total"] == 6
            assert _metric(client, key_header, "faceops_gallery_rebuild_progress") < 1.0
            # During the rebuild: one identity more, one less.
            assert _enrol(client, key_header, "Gerhard_Schroeder", people["Gerhard_Schroeder"][:2]).status_code == 201
            assert client.delete("/v1/identities/Donald_Rumsfeld", headers=key_header).status_code == 200
            still = client.get("/ready", headers=key_header).json()
            assert still["rebuild"] is not None and still["model"]["version"] == old["version"], still
            now = wait_until(
                lambda: (m := client.get("/ready", headers=key_header).json()["model"])["version"] != old["version"] and m,
                300,
                "the switch to the new model",
            )
            hammer.at_least(len(hammer.seen) + 2)
        seen = hammer.seen
        assert all(status == 200 for status, _, _ in seen), seen  # never a failed request
        versions = [v for _, v, _ in seen]
        assert versions[0] == old["version"] and versions[-1] == now["version"]
        assert versions == sorted(versions, key=[old["version"], now["version"]].index)  # one switch, no way back
        assert all("Colin_Powell" in names for _, _, names in seen), seen
        ready = client.get("/ready", headers=key_header).json()
        assert ready["model"]["model_id"].startswith(new_id) and ready["rebuild"] is None
        assert ready["gallery"] == {"identities": 3, "embeddings": 6}, ready
        assert ready["last_rebuild"]["progress"] == 1.0 and ready["model_swaps"] == 1
        assert _metric(client, key_header, "faceops_gallery_rebuild_progress") == 1.0
        listed = [i["identity"] for i in client.get("/v1/identities", headers=key_header).json()["identities"]]
        assert listed == ["Colin_Powell", "Gerhard_Schroeder", "Tony_Blair"]
        probe = people["Gerhard_Schroeder"][3]  # enrolled during the rebuild: found by the new model
        found = client.post("/v1/recognize", files={"image": (probe.name, probe.read_bytes())}, headers=key_header)
        assert found.json()["faces"][0]["identity"] == "Gerhard_Schroeder", found.text


def test_an_interrupted_rebuild_resumes_where_it_stopped(request, bundle_dir, api_key, key_header, people, tmp_path):
    local, settings = _setup(request, "embedded", bundle_dir, api_key, tmp_path)
    with TestClient(create_app(settings)) as client:
        for name in FIRST:
            assert _enrol(client, key_header, name, people[name][:2]).status_code == 201
        new_id = _publish_retrained(bundle_dir, local, 0.33)
        wait_until(
            lambda: (client.get("/ready", headers=key_header).json()["rebuild"] or {}).get("photos_embedded", 0) >= 2,
            300,
            "two photos embedded by the new model",
            interval=0.05,
        )
    partial = Gallery.load(settings.state_dir / "gallery-rebuild.npz")  # saved batch by batch
    assert partial.model_id.startswith(new_id) and len(partial) >= 2
    assert Gallery.load(settings.gallery_path).model_id != partial.model_id  # the old one still in place

    with TestClient(create_app(settings)) as client:  # a restart: the new model is champion, its gallery half done
        ready = client.get("/ready", headers=key_header).json()
        done = ready["last_rebuild"]
        assert ready["model"]["model_id"] == partial.model_id and ready["gallery"] == {"identities": 3, "embeddings": 6}
        assert done["photos_resumed"] >= 2 and done["photos_resumed"] + done["photos_embedded"] == 6, done
    assert not (settings.state_dir / "gallery-rebuild.npz").exists()
    assert Gallery.load(settings.gallery_path).model_id == partial.model_id
