"""Bad input never gets a 5xx: every bad image of the core's list, wrong types, missing fields, unknown ids,
oversized bodies, missing keys and floods get a 4xx with a clear JSON error, and the service keeps serving."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from faceops.serving.app import create_app
from fastapi.testclient import TestClient
from PIL import Image

from faceops.errors import ConfigError
from tests.serving.serving_helpers import bmp_header_only, make_settings, png_16bit

FACE = "Colin_Powell"


@pytest.fixture(scope="module")
def face_bytes(people) -> bytes:
    return people[FACE][0].read_bytes()


def _rgba_png(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGBA").save(out, "PNG")
    return out.getvalue()


def _bad_images(face: bytes, rng: np.random.Generator) -> dict[str, tuple[bytes, int, str]]:
    noisy = bytearray(face)
    noisy[20:] = rng.integers(0, 256, len(face) - 20, dtype=np.uint8).tobytes()
    return {
        "empty": (b"", 400, "empty_image"),
        "text named .jpg": (b"this is not a photo\n" * 20, 415, "unsupported_image"),
        "pdf": (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", 415, "unsupported_image"),
        "svg": (
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            415,
            "unsupported_image",
        ),
        "html": (b"<!DOCTYPE html><html><body>hi</body></html>", 415, "unsupported_image"),
        "zip": (b"PK\x03\x04" + bytes(60), 415, "unsupported_image"),
        "truncated jpeg": (face[: len(face) // 2], 422, "corrupt_image"),
        "random after jpeg magic": (bytes(noisy), 422, "corrupt_image"),
        "bomb (header claims 30000x30000)": (bmp_header_only(30_000, 30_000), 413, "image_too_large"),
    }


@pytest.mark.parametrize("endpoint", ["/v1/detect", "/v1/recognize"])
def test_every_bad_image_gets_its_own_4xx(client, key_header, face_bytes, endpoint) -> None:
    for label, (data, status, code) in _bad_images(face_bytes, np.random.default_rng(0)).items():
        response = client.post(
            endpoint, files={"image": ("photo.jpg", data, "image/jpeg")}, headers=key_header
        )
        body = response.json()
        if label == "random after jpeg magic":  # PIL may see the noise as truncation or as a bad format
            assert response.status_code in (415, 422) and body["error"] in (
                "corrupt_image",
                "unsupported_image",
            )
        else:
            assert (response.status_code, body["error"]) == (status, code), (label, body)
        assert isinstance(body["detail"], str) and len(body["detail"]) > 10, label
    assert client.get("/health").status_code == 200


def test_odd_but_valid_images_work(client, key_header, people) -> None:
    path = people[FACE][1]
    for label, data in {"16-bit grey png": png_16bit(path), "rgba png": _rgba_png(path.read_bytes())}.items():
        response = client.post(
            "/v1/detect", files={"image": ("x.bin", data, "application/octet-stream")}, headers=key_header
        )
        assert response.status_code == 200, (label, response.text)
        assert len(response.json()["faces"]) >= 1, label


def test_wrong_content_types_missing_fields_bad_json(client, key_header, face_bytes) -> None:
    cases = [
        (dict(content=face_bytes, headers={"Content-Type": "image/jpeg"}), 415, "unsupported_media_type"),
        (dict(content=b"hello", headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type"),
        (dict(content=b"{not json", headers={"Content-Type": "application/json"}), 400, "bad_request"),
        (dict(json={}), 422, "invalid_request"),
        (dict(json={"image": "abc", "extra": 1}), 422, "invalid_request"),
        (dict(json={"image": "***not base64***"}), 422, "invalid_request"),
        (dict(json={"image": ""}), 400, "empty_image"),
        (dict(data={"note": "no file"}, files={"other": ("x.jpg", face_bytes)}), 422, "invalid_request"),
    ]
    for kwargs, status, code in cases:
        kwargs.setdefault("headers", {})
        kwargs["headers"] = {**kwargs["headers"], **key_header}
        response = client.post("/v1/detect", **kwargs)
        assert (response.status_code, response.json()["error"]) == (status, code), (
            kwargs.get("json"),
            response.text,
        )
    verify = client.post("/v1/verify", files={"a": ("a.jpg", face_bytes)}, headers=key_header)
    assert verify.status_code == 422 and "'b'" in verify.json()["detail"]


def test_no_face_unknown_ids_and_bad_names(client, key_header, face_bytes, no_face_jpeg) -> None:
    h = key_header
    verify = client.post(
        "/v1/verify", files={"a": ("a.jpg", face_bytes), "b": ("chips.jpg", no_face_jpeg)}, headers=h
    )
    assert verify.status_code == 422 and verify.json()["error"] == "no_face_detected"
    assert "chips.jpg" in verify.json()["detail"]
    only_no_face = client.post(
        "/v1/identities",
        data={"identity": "Nobody"},
        files=[("images", ("chips.jpg", no_face_jpeg))],
        headers=h,
    )
    assert only_no_face.status_code == 422 and only_no_face.json()["error"] == "no_face_detected"
    partly = client.post(
        "/v1/identities",
        data={"identity": "Partly"},
        headers=h,
        files=[("images", ("ok.jpg", face_bytes)), ("images", ("chips.jpg", no_face_jpeg))],
    )
    assert partly.status_code == 201 and partly.json()["added"] == 1
    assert [r["image"] for r in partly.json()["rejected"]] == ["chips.jpg"]
    for name in ("../etc", "unknown", "", "a/b", "x" * 200):
        bad = client.post(
            "/v1/identities", data={"identity": name}, files=[("images", ("ok.jpg", face_bytes))], headers=h
        )
        assert bad.status_code == 422, name
    assert (
        client.post(
            "/v1/identities/Ghost/images", files=[("images", ("ok.jpg", face_bytes))], headers=h
        ).json()["error"]
        == "unknown_identity"
    )
    assert client.delete("/v1/identities/Ghost", headers=h).status_code == 404
    assert client.get("/v1/identities/Ghost", headers=h).status_code == 404
    assert client.get("/v1/nope", headers=h).status_code == 404


def test_oversized_bodies_and_too_many_images(client, key_header, face_bytes) -> None:
    big = bytes(3 * 1024 * 1024)  # over the 2 MiB limit of the test app
    response = client.post(
        "/v1/detect", files={"image": ("big.jpg", b"\xff\xd8\xff" + big)}, headers=key_header
    )
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    as_json = client.post("/v1/detect", json={"image": base64.b64encode(big).decode()}, headers=key_header)
    assert as_json.status_code == 413
    many = [("images", (f"{i}.jpg", face_bytes)) for i in range(25)]
    too_many = client.post("/v1/identities", data={"identity": "Many"}, files=many, headers=key_header)
    assert 400 <= too_many.status_code < 500
    assert (
        client.post("/v1/detect", files={"image": ("ok.jpg", face_bytes)}, headers=key_header).status_code
        == 200
    )


def test_rate_limit_cors_off_and_keys_required(bundle_dir, api_key, tmp_path, face_bytes) -> None:
    settings = make_settings(bundle_dir, tmp_path, api_key, rate_limit_per_minute=6, rate_limit_burst=3)
    with TestClient(create_app(settings)) as limited:
        codes = [limited.get("/v1/identities", headers={"X-API-Key": api_key}).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3] == 429
        last = limited.get("/v1/identities", headers={"X-API-Key": api_key})
        assert last.status_code == 429 and int(last.headers["Retry-After"]) >= 1
        assert last.json()["error"] == "rate_limited"
        preflight = limited.options(
            "/v1/detect", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in preflight.headers
    with pytest.raises(ConfigError, match="no API keys configured"):
        from faceops.serving.config import ServingSettings

        create_app(ServingSettings(bundle_dir=bundle_dir, state_dir=tmp_path))
