"""The API end to end on real LFW photos: detect, enroll, recognize, verify, delete, feedback, metrics."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from faceops.face.gallery import Gallery
from tests.serving.conftest import BUNDLE_THRESHOLD


def _upload(path: Path, field: str = "image") -> dict:
    return {field: (path.name, path.read_bytes(), "image/jpeg")}


def test_probes_are_open_everything_else_needs_a_key(client, key_header) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    for path in ("/metrics", "/v1/identities"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"] == "unauthorized"
    # Kubernetes probes /ready without a key: the status, the version and counts, nothing more.
    probe = client.get("/ready")
    assert probe.status_code == 200 and set(probe.json()) == {"ready", "model_version", "source_reachable", "alerts"}
    assert probe.json()["ready"] is True and probe.json()["alerts"] == 0
    assert client.get("/ready", headers={"X-API-Key": "fo_wrong"}).status_code == 401  # a bad key is still refused
    full = client.get("/ready", headers={"Authorization": f"Bearer {key_header['X-API-Key']}"})
    assert full.status_code == 200 and {"gallery", "model", "source", "repairs"} <= set(full.json())


def test_ready_reports_the_model_with_its_own_threshold(client, key_header, bundle_dir) -> None:
    body = client.get("/ready", headers=key_header).json()
    assert body["ready"] is True and body["source"]["reachable"] is True
    assert body["model"]["version"].startswith("local-")
    assert body["model"]["threshold"] == pytest.approx(BUNDLE_THRESHOLD)
    assert body["model"]["target_far"] == pytest.approx(1e-3)
    assert body["model"]["preprocess"]["align"]["method"] in ("similarity", "crop")


def test_detect_multipart_and_base64_agree(client, key_header, people) -> None:
    photo = people["Colin_Powell"][0]
    multipart = client.post("/v1/detect", files=_upload(photo), headers=key_header)
    assert multipart.status_code == 200, multipart.text
    body = multipart.json()
    with Image.open(photo) as image:
        width, height = image.size
    assert (body["width"], body["height"]) == (width, height)
    assert len(body["faces"]) >= 1
    x1, y1, x2, y2 = body["faces"][0]["box"]
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height and body["faces"][0]["probability"] > 0.9
    as_json = client.post(
        "/v1/detect", json={"image": base64.b64encode(photo.read_bytes()).decode()}, headers=key_header
    )
    assert as_json.status_code == 200
    assert as_json.json()["faces"] == body["faces"]
    assert multipart.json()["request_id"] != as_json.json()["request_id"]


def test_enroll_recognize_verify_delete(client, key_header, people, stranger) -> None:  # noqa: PLR0915
    for name, photos in people.items():
        files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in photos[:2]]
        response = client.post("/v1/identities", data={"identity": name}, files=files, headers=key_header)
        assert response.status_code == 201, response.text
        assert response.json()["added"] == 2 and response.json()["embeddings"] == 2
    again = client.post(
        "/v1/identities",
        data={"identity": "Colin_Powell"},
        files=[("images", ("x.jpg", people["Colin_Powell"][2].read_bytes(), "image/jpeg"))],
        headers=key_header,
    )
    assert again.status_code == 409 and again.json()["error"] == "identity_exists"
    listing = client.get("/v1/identities", headers=key_header).json()["identities"]
    assert {i["identity"]: i["embeddings"] for i in listing} == {n: 2 for n in people}

    for name, photos in people.items():
        body = client.post("/v1/recognize", files=_upload(photos[3]), headers=key_header).json()
        assert body["threshold"] == pytest.approx(BUNDLE_THRESHOLD)
        subject = max(body["faces"], key=lambda f: f["box"][2] - f["box"][0])
        assert subject["identity"] == name, body
        assert subject["score"] >= BUNDLE_THRESHOLD and subject["candidates"][0]["identity"] == name
    unknown = client.post("/v1/recognize", files=_upload(stranger), headers=key_header).json()
    assert [f["identity"] for f in unknown["faces"]] == ["unknown"]

    added = client.post(
        "/v1/identities/Tony_Blair/images",
        headers=key_header,
        json={"images": [base64.b64encode(people["Tony_Blair"][2].read_bytes()).decode()]},
    )
    assert added.status_code == 200 and added.json()["embeddings"] == 3

    same = client.post(
        "/v1/verify",
        headers=key_header,
        files={
            "a": ("a.jpg", people["Tony_Blair"][0].read_bytes()),
            "b": ("b.jpg", people["Tony_Blair"][3].read_bytes()),
        },
    )
    assert same.status_code == 200 and same.json()["same"] is True
    different = client.post(
        "/v1/verify",
        headers=key_header,
        json={
            "a": base64.b64encode(people["Tony_Blair"][0].read_bytes()).decode(),
            "b": base64.b64encode(stranger.read_bytes()).decode(),
        },
    )
    assert different.json()["same"] is False and different.json()["similarity"] < same.json()["similarity"]

    gone = client.delete("/v1/identities/Tony_Blair", headers=key_header)
    assert gone.json()["identity"] == "Tony_Blair" and gone.json()["removed_embeddings"] == 3
    assert client.get("/v1/identities/Tony_Blair", headers=key_header).status_code == 404
    assert client.delete("/v1/identities/Tony_Blair", headers=key_header).status_code == 404
    after = client.post("/v1/recognize", files=_upload(people["Tony_Blair"][3]), headers=key_header).json()
    assert all(c["identity"] != "Tony_Blair" for f in after["faces"] for c in f["candidates"])

    state_dir = client.app.state.ctx.settings.state_dir
    saved = Gallery.load(state_dir / "gallery.npz")
    assert set(saved.identities) == set(people) - {"Tony_Blair"}
    assert not (state_dir / "enrolled" / "Tony_Blair").exists()


def test_request_log_rows_and_feedback(client, key_header, people) -> None:
    body = client.post("/v1/recognize", files=_upload(people["Colin_Powell"][3]), headers=key_header).json()
    request_id = body["request_id"]
    ok = client.post(
        "/v1/feedback",
        headers=key_header,
        json={"request_id": request_id, "face_index": 0, "truth": "Colin_Powell"},
    )
    assert ok.status_code == 200 and ok.json()["status"] == "recorded"
    missing = client.post(
        "/v1/feedback", headers=key_header, json={"request_id": "nope", "truth": "impostor"}
    )
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_request"
    bad_face = client.post(
        "/v1/feedback",
        headers=key_header,
        json={"request_id": request_id, "face_index": 9, "truth": "impostor"},
    )
    assert bad_face.status_code == 404

    path = client.app.state.ctx.settings.log_path
    with sqlite3.connect(path) as db:  # monitoring reads the file directly
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        request = db.execute(
            "SELECT endpoint, model_version, status, latency_ms, n_faces, threshold, image "
            "FROM requests WHERE request_id=?",
            (request_id,),
        ).fetchone()
        face = db.execute(
            "SELECT det_probability, face_size, brightness, blur, top1_identity, top1_similarity, "
            "margin, decision FROM faces WHERE request_id=? AND face_index=0",
            (request_id,),
        ).fetchone()
        truth = db.execute("SELECT truth FROM feedback WHERE request_id=?", (request_id,)).fetchall()
    endpoint, version, status, latency, n_faces, threshold, image = request
    assert (endpoint, status, n_faces) == ("recognize", 200, len(body["faces"]))
    assert version == body["model_version"] and latency > 0 and threshold == pytest.approx(BUNDLE_THRESHOLD)
    assert image is None  # no raw images by default
    det_p, size, bright, blur, top1, sim, margin, decision = face
    assert 0.9 <= det_p <= 1.0 and 20 < size < 250 and 20 < bright < 235 and blur > 0
    assert top1 == "Colin_Powell" and sim == pytest.approx(body["faces"][0]["score"], abs=1e-5)
    assert margin is not None and margin > 0 and decision == "known"
    assert truth == [("Colin_Powell",)]


def test_metrics_expose_requests_latency_faces_unknown_rate_and_model(client, key_header) -> None:
    text = client.get("/metrics", headers=key_header).text
    version = client.get("/ready", headers=key_header).json()["model"]["version"]
    assert 'faceops_requests_total{endpoint="recognize",status="200"}' in text
    assert 'faceops_request_latency_seconds_bucket{endpoint="detect",le="0.5"}' in text
    assert 'faceops_faces_total{endpoint="recognize"}' in text
    assert "faceops_unknown_rate " in text
    assert 'faceops_model_info{model_id="' in text and f'version="{version}"' in text
    assert "faceops_model_source_up 1.0" in text


def test_openapi_documents_both_upload_forms(client) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/recognize"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert {
        "/v1/detect",
        "/v1/verify",
        "/v1/identities",
        "/v1/identities/{identity}",
        "/v1/feedback",
        "/ready",
        "/metrics",
    } <= set(spec["paths"])
