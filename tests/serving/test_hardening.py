"""Issue 13's causes of 5xx answers and dropped connections, each reproduced against the real app, and the
request log recording the status every client actually got."""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from tests.serving.serving_helpers import LiveServer, make_settings

FACE = "Colin_Powell"


@pytest.fixture(scope="module")
def client(bundle_dir, api_key, tmp_path_factory):  # type: ignore[no-untyped-def]
    """This module's app without a rate limit: it sends well over one burst of requests in a few seconds."""
    from faceops.serving.app import create_app
    from fastapi.testclient import TestClient

    settings = make_settings(
        bundle_dir, tmp_path_factory.mktemp("state"), api_key, max_body_bytes=2 * 1024 * 1024, rate_limit_per_minute=0
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def face_bytes(people) -> bytes:
    return people[FACE][0].read_bytes()


def _png(width: int, height: int, source: bytes | None = None) -> bytes:
    image = (
        Image.open(io.BytesIO(source)).convert("RGB").resize((width, height))
        if source
        else Image.new("RGB", (width, height), (128, 96, 80))
    )
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _enrol(client, headers: dict, name: str, data: bytes, more: bool = False):  # type: ignore[no-untyped-def]
    if more:
        return client.post(f"/v1/identities/{name}/images", files=[("images", ("b.jpg", data))], headers=headers)
    return client.post("/v1/identities", data={"identity": name}, files=[("images", ("a.jpg", data))], headers=headers)


def _last_row(client) -> tuple:  # type: ignore[no-untyped-def]
    log = client.app.state.ctx.log
    return log.query("SELECT COUNT(*) FROM requests")[0][0], log.query(
        "SELECT endpoint, status, error FROM requests ORDER BY rowid DESC LIMIT 1"
    )[0]


def test_json_bodies_that_crashed_the_parser_are_400(client, key_header) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    cases = {
        "nested 100,000 deep": deep,
        "object nested 100,000 deep": b'{"image": ' + deep + b"}",
        "invalid UTF-8": b'{"image": "\xff\xfe\xfa"}',
        "number over Python's digit limit": b'{"image": ' + b"1" * 5000 + b"}",
    }
    headers = {**key_header, "Content-Type": "application/json"}
    for endpoint in ("/v1/detect", "/v1/verify", "/v1/identities"):
        for label, body in cases.items():
            response = client.post(endpoint, content=body, headers=headers)
            assert response.status_code == 400, (endpoint, label, response.text)
            detail = response.json()["detail"]
            assert response.json()["error"] == "bad_request" and ("JSON" in detail or "UTF-8" in detail), label
    feedback = client.post("/v1/feedback", content=deep, headers=headers)  # FastAPI's own parser
    assert 400 <= feedback.status_code < 500
    assert client.get("/health").status_code == 200


def test_feedback_index_and_truth_are_checked(client, key_header, people) -> None:
    h = key_header
    a, b = (people[FACE][i].read_bytes() for i in (0, 1))
    verify = client.post("/v1/verify", json={"a": _b64(a), "b": _b64(b)}, headers=h)
    assert verify.status_code == 200
    request_id = verify.json()["request_id"]

    def send(face_index: int, truth: str = "genuine"):  # type: ignore[no-untyped-def]
        return client.post(
            "/v1/feedback", json={"request_id": request_id, "face_index": face_index, "truth": truth}, headers=h
        )

    for index in (2**63, 2**64, 2**31):  # beyond SQLite's integers, or any photo's faces
        assert send(index).status_code == 422, index
    beyond = send(2)  # a verify request has two faces: 0 and 1
    assert beyond.status_code == 404 and "out of range" in beyond.json()["detail"]
    for truth in ("   ", "\t\n", "ann\x00", "a\nb"):
        refused = send(0, truth)
        assert refused.status_code == 422, repr(truth)
        assert "white space" in refused.text or "control characters" in refused.text
    assert send(1, "  genuine ").json()["truth"] == "genuine"
    stored = client.app.state.ctx.log.query("SELECT face_index, truth FROM feedback WHERE request_id=?", (request_id,))
    assert stored == [(1, "genuine")]
    listing = client.get("/v1/identities", headers=h)  # logged too, but not a request whose faces take truth
    assert listing.status_code == 200
    endpoint_id = client.app.state.ctx.log.query(
        "SELECT request_id FROM requests WHERE endpoint='list_identities' ORDER BY rowid DESC LIMIT 1"
    )[0][0]
    other = client.post("/v1/feedback", json={"request_id": endpoint_id, "truth": "impostor"}, headers=h)
    assert other.status_code == 404 and "feedback is for the faces" in other.json()["detail"]


def test_identity_names_mean_the_same_in_json_and_forms(client, key_header, face_bytes) -> None:
    h = key_header
    as_json = client.post("/v1/identities", json={"identity": "  Json Padded ", "images": [_b64(face_bytes)]}, headers=h)
    as_form = client.post(
        "/v1/identities", data={"identity": " Form Padded  "}, files=[("images", ("a.jpg", face_bytes))], headers=h
    )
    assert (as_json.status_code, as_json.json()["identity"]) == (201, "Json Padded")
    assert (as_form.status_code, as_form.json()["identity"]) == (201, "Form Padded")
    for name in ("unknown", " ../etc", "a/b", "x" * 129):
        j = client.post("/v1/identities", json={"identity": name, "images": [_b64(face_bytes)]}, headers=h)
        f = client.post("/v1/identities", data={"identity": name}, files=[("images", ("a.jpg", face_bytes))], headers=h)
        assert j.status_code == f.status_code == 422, (name, j.text, f.text)
        assert "invalid identity name" in j.text and "invalid identity name" in f.text, name
    # An unknown field is refused alike, in a form as in JSON.
    extra_form = client.post(
        "/v1/identities", data={"identity": "Extra", "note": "x"}, files=[("images", ("a.jpg", face_bytes))], headers=h
    )
    extra_json = client.post(
        "/v1/identities", json={"identity": "Extra", "note": "x", "images": [_b64(face_bytes)]}, headers=h
    )
    assert extra_form.status_code == extra_json.status_code == 422
    for name in ("Json Padded", "Form Padded"):
        assert client.delete(f"/v1/identities/{name}", headers=h).status_code == 200


def test_top_k_works_alike_in_query_form_and_json_and_is_documented(client, key_header, people) -> None:
    h = key_header
    names = list(people)
    for name in names:
        enrolled = _enrol(client, h, name, people[name][0].read_bytes())
        assert enrolled.status_code == 201, enrolled.text
    query = people[FACE][2].read_bytes()
    try:
        for k in (1, len(names)):
            ways = {
                "query": client.post(f"/v1/recognize?top_k={k}", files={"image": ("q.jpg", query)}, headers=h),
                "form": client.post("/v1/recognize", data={"top_k": str(k)}, files={"image": ("q.jpg", query)}, headers=h),
                "json": client.post("/v1/recognize", json={"image": _b64(query), "top_k": k}, headers=h),
            }
            for way, response in ways.items():
                assert response.status_code == 200, (way, response.text)
                assert len(response.json()["faces"][0]["candidates"]) == k, (way, k)
        for bad in (0, 21, "two"):
            refused = [
                client.post(f"/v1/recognize?top_k={bad}", files={"image": ("q.jpg", query)}, headers=h),
                client.post("/v1/recognize", data={"top_k": str(bad)}, files={"image": ("q.jpg", query)}, headers=h),
                client.post("/v1/recognize", json={"image": _b64(query), "top_k": bad}, headers=h),
            ]
            assert [r.status_code for r in refused] == [422, 422, 422], bad
        twice = client.post("/v1/recognize?top_k=1", json={"image": _b64(query), "top_k": 2}, headers=h)
        assert twice.status_code == 422 and "twice" in twice.text
    finally:
        for name in names:
            client.delete(f"/v1/identities/{name}", headers=h)
    recognize = client.get("/openapi.json").json()["paths"]["/v1/recognize"]["post"]
    param = next(p for p in recognize["parameters"] if p["name"] == "top_k")
    assert param["in"] == "query" and "Candidates" in param["description"]
    for content in recognize["requestBody"]["content"].values():
        top_k = content["schema"]["properties"]["top_k"]
        assert (top_k["type"], top_k["minimum"], top_k["maximum"]) == ("integer", 1, 20)
        assert content["schema"]["additionalProperties"] is False


def test_simultaneous_enrolments_of_one_new_identity_give_one_201_and_one_409(client, key_header, people) -> None:
    service = client.app.state.ctx.service
    both_embedding = threading.Barrier(2, timeout=120)
    decode = service.decode

    def decode_together(data: bytes, name: str):  # type: ignore[no-untyped-def]
        both_embedding.wait()  # both requests are past the first exists-check before either writes
        return decode(data, name)

    photos = [people["Tony_Blair"][i].read_bytes() for i in (0, 1)]

    def enrol(data: bytes):  # type: ignore[no-untyped-def]
        return client.post(
            "/v1/identities", data={"identity": "Racer"}, files=[("images", ("a.jpg", data))], headers=key_header
        )

    service.decode = decode_together
    try:
        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(enrol, photos))
    finally:
        del service.decode
    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    assert service.state.gallery.identities["Racer"] == 1  # one entry, not two
    assert client.delete("/v1/identities/Racer", headers=key_header).status_code == 200


def test_tiny_and_extreme_aspect_images_are_no_face_in_every_face_route(client, key_header, face_bytes) -> None:
    h = key_header
    images = {f"{w}x{h_}": _png(w, h_) for w, h_ in ((1, 1), (2, 2), (11, 11), (19, 19), (10000, 10), (10, 10000), (5000, 30))}
    images["face at 16x16"] = _png(16, 16, face_bytes)
    for label, data in images.items():
        for endpoint in ("/v1/detect", "/v1/recognize"):
            response = client.post(endpoint, files={"image": ("t.png", data)}, headers=h)
            assert response.status_code == 200 and response.json()["faces"] == [], (label, endpoint, response.text)
        pair = client.post("/v1/verify", files={"a": ("face.jpg", face_bytes), "b": ("t.png", data)}, headers=h)
        enrol = client.post("/v1/identities", data={"identity": "Tiny"}, files=[("images", ("t.png", data))], headers=h)
        for response in (pair, enrol):
            assert response.status_code == 422 and response.json()["error"] == "no_face_detected", (label, response.text)
    assert client.get("/health").status_code == 200


def test_the_request_log_records_the_status_each_client_got(client, key_header, face_bytes, people) -> None:
    h = key_header
    limit = client.app.state.ctx.settings.max_body_bytes

    def chunks():  # no Content-Length: the limit trips while the route reads the body
        for _ in range(limit // 65536 + 2):
            yield b"\xff" * 65536

    deep = b'{"image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    multipart = {"Content-Type": "multipart/form-data; boundary=xyz"}
    requests = [
        ("detect", lambda: client.post("/v1/detect", files={"image": ("a.jpg", face_bytes)}, headers=h)),
        ("detect", lambda: client.post("/v1/detect", content=b"x", headers={**h, "Content-Type": "multipart/form-data"})),
        ("detect", lambda: client.post("/v1/detect", content=b"--xyz\r\ngarbage", headers={**h, **multipart})),
        ("detect", lambda: client.post("/v1/detect", content=chunks(), headers={**h, **multipart})),
        ("recognize", lambda: client.post("/v1/recognize", content=chunks(), headers={**h, "Content-Type": "application/json"})),
        ("detect", lambda: client.post("/v1/detect", content=deep, headers={**h, "Content-Type": "application/json"})),
        ("detect", lambda: client.post("/v1/detect", content=b'{"image": "\xff"}', headers={**h, "Content-Type": "application/json"})),
        ("recognize", lambda: client.post("/v1/recognize?top_k=0", files={"image": ("a.jpg", face_bytes)}, headers=h)),
        ("verify", lambda: client.post("/v1/verify", files={"a": ("a.jpg", face_bytes)}, headers=h)),
        ("enroll", lambda: _enrol(client, h, "Logged", face_bytes)),
        ("enroll", lambda: _enrol(client, h, "Logged", face_bytes)),
        ("enroll", lambda: _enrol(client, h, "unknown", face_bytes)),
        ("add_images", lambda: _enrol(client, h, "Logged", people[FACE][1].read_bytes(), more=True)),
        ("add_images", lambda: client.post("/v1/identities/Ghost/images", files=[("images", ("b.jpg", face_bytes))], headers=h)),
        ("list_identities", lambda: client.get("/v1/identities", headers=h)),
        ("get_identity", lambda: client.get("/v1/identities/Logged", headers=h)),
        ("get_identity", lambda: client.get("/v1/identities/Ghost", headers=h)),
        ("get_identity", lambda: client.get("/v1/identities/" + "x" * 129, headers=h)),
        ("delete_identity", lambda: client.delete("/v1/identities/Logged", headers=h)),
        ("delete_identity", lambda: client.delete("/v1/identities/Logged", headers=h)),
        ("feedback", lambda: client.post("/v1/feedback", json={"request_id": "nope", "truth": "ann"}, headers=h)),
        ("feedback", lambda: client.post("/v1/feedback", json={"request_id": "nope", "truth": "  "}, headers=h)),
    ]
    statuses = []
    for endpoint, send in requests:
        before = _last_row(client)[0]
        response = send()
        count, (logged_endpoint, logged_status, error) = _last_row(client)
        # a deletion also erases the rows that name the person (issue 16): it says how many
        erased = response.json()["removed"]["log_requests"] if endpoint == "delete_identity" and response.is_success else 0
        assert count == before + 1 - erased, (endpoint, response.status_code, "not logged once")
        assert (logged_endpoint, logged_status) == (endpoint, response.status_code), (response.text, error)
        if response.status_code >= 400:
            assert error and response.json()["error"] in error, (endpoint, error)
        statuses.append(response.status_code)
    # The set covers successes and each kind of refusal, and none is a server error.
    assert {200, 201, 400, 404, 409, 413, 422} <= set(statuses) and max(statuses) < 500


def test_an_unexpected_error_is_a_logged_500_on_a_connection_that_stays_open(caplog) -> None:
    from faceops.serving.errors import install_error_handlers
    from fastapi import FastAPI

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("a bug")

    @app.get("/fine")
    async def fine() -> dict:
        return {"ok": True}

    with caplog.at_level(logging.ERROR), LiveServer(app) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            connection.request("GET", "/boom")
            failed = connection.getresponse()
            body = json.loads(failed.read())
            connection.request("GET", "/fine")  # the same kept-alive connection
            again = connection.getresponse()
            assert again.status == 200 and json.loads(again.read()) == {"ok": True}
        finally:
            connection.close()
    assert failed.status == 500 and body == {"error": "internal_error", "detail": "RuntimeError: the error is logged"}
    tracebacks = [r for r in caplog.records if r.exc_info and "/boom" in r.getMessage()]
    assert tracebacks and "a bug" in str(tracebacks[0].exc_info[1])


def test_openapi_route_names_are_the_logged_endpoints(client) -> None:
    """The request log names a request by its route's name: one vocabulary for logs, metrics and the schema."""
    spec = client.get("/openapi.json").json()
    ids = {op["operationId"].split("_v1")[0] for path in spec["paths"].values() for op in path.values()}
    assert {"detect", "recognize", "verify", "enroll", "add_images", "list_identities", "get_identity",
            "delete_identity", "feedback"} <= ids
    assert Path(client.app.state.ctx.settings.log_path).is_file()
