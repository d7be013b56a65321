"""Keys never leak and cannot be guessed fast: no log line of a real ``faceops serve`` shows a key (even one a
client put in a URL), failed attempts and WebSocket frames are rate-limited, a WebSocket's ``Origin`` is
checked, and every HTML page carries a Content-Security-Policy and anti-framing headers."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import websocket  # websocket-client
from faceops.serving.app import create_app
from faceops.serving.security import RedactKeys, hash_key, new_api_key
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.serving.serving_helpers import free_port, make_settings, wait_until


@pytest.mark.integration
def test_no_log_line_of_a_real_server_contains_a_key(bundle_dir, tmp_path, no_face_jpeg) -> None:
    key = new_api_key()  # this test's own key: any trace of it in a log comes from here
    keys = tmp_path / "keys.txt"
    keys.write_text(f"tests:{hash_key(key)}\n")
    state, port = tmp_path / "state", free_port()
    url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/stream"
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("faceops")), "serve", "--bundle", str(bundle_dir),
             "--state-dir", str(state), "--api-keys-file", str(keys), "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "FACEOPS_SERVE_LOG_STORE_IMAGES": "true"},
        )  # fmt: skip
    try:
        wait_until(lambda: _status(f"{url}/health") == 200, 300, "faceops serve to start")
        assert requests.get(f"{url}/ready", headers={"X-API-Key": key}, timeout=30).status_code == 200
        bearer = {"Authorization": f"Bearer {key}"}
        r = requests.post(f"{url}/v1/detect", files={"image": ("x.jpg", no_face_jpeg)}, headers=bearer, timeout=120)
        assert r.status_code == 200, r.text
        # a careless client puts the key in URLs: refused, and not logged either
        assert requests.get(f"{url}/v1/identities?api_key={key}", timeout=30).status_code == 401
        with pytest.raises(websocket.WebSocketException):
            ws = websocket.create_connection(f"{ws_url}?api_key={key}", timeout=30)
            ws.recv()
        # the two ways that work: a header, or the key as the first message
        for first, header in ((None, [f"X-API-Key: {key}"]), (json.dumps({"api_key": key}), [])):
            ws = websocket.create_connection(ws_url, header=header, timeout=120)
            if first:
                ws.send(first)
            ws.send_binary(no_face_jpeg)
            reply = json.loads(ws.recv())
            ws.close()
            assert reply["frame"] == 1 and reply["faces"] == [], reply
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    text = log_file.read_text()
    assert '"GET /ready HTTP/1.1" 200' in text and "/v1/stream" in text, text[-3000:]  # access logging was on
    assert "api_key=[redacted]" in text, text[-3000:]  # the URL with the key was logged, redacted
    assert key not in text and hash_key(key) not in text
    for path in state.rglob("*"):  # nor any state file (request log with images, gallery)
        assert not path.is_file() or key.encode() not in path.read_bytes(), path


def _status(url: str) -> int | None:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException:
        return None


def test_redaction_filter_scrubs_keys_from_any_record() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', ("1.2.3.4:5", "GET",
        "/ready?x=1&api_key=fo_secret&y=2", "1.1", 401), None,
    )  # fmt: skip
    assert RedactKeys().filter(record)
    assert record.getMessage() == '1.2.3.4:5 - "GET /ready?x=1&api_key=[redacted]&y=2 HTTP/1.1" 401'


def test_failed_key_attempts_are_throttled_per_address(bundle_dir, api_key, tmp_path) -> None:
    settings = make_settings(bundle_dir, tmp_path, api_key, auth_failure_burst=3, auth_failures_per_minute=1)
    app = create_app(settings)
    with TestClient(app) as guesser:
        other = TestClient(app, client=("10.0.0.2", 40000))
        statuses = [guesser.get("/ready", headers={"X-API-Key": f"fo_guess{i}"}).status_code for i in range(4)]
        assert statuses == [401, 401, 401, 429]
        blocked = guesser.get("/ready", headers={"X-API-Key": api_key})  # even the right key, while throttled
        assert blocked.status_code == 429 and "failed API key attempts" in blocked.json()["detail"]
        assert int(blocked.headers["Retry-After"]) > 0
        with pytest.raises(WebSocketDisconnect) as info, guesser.websocket_connect("/v1/stream") as ws:
            ws.send_json({"api_key": api_key})
            ws.receive_json()
        assert info.value.code == 1008 and "failed API key attempts" in info.value.reason
        assert other.get("/ready", headers={"X-API-Key": api_key}).status_code == 200  # another address


def test_websocket_frames_count_against_the_rate_limit(bundle_dir, api_key, tmp_path, no_face_jpeg) -> None:
    settings = make_settings(bundle_dir, tmp_path, api_key, rate_limit_per_minute=1, rate_limit_burst=3)
    with TestClient(create_app(settings)) as client:
        with client.websocket_connect("/v1/stream", headers={"X-API-Key": api_key}) as ws:  # the connection: 1
            replies = []
            for _ in range(3):
                ws.send_bytes(no_face_jpeg)
                replies.append(ws.receive_json())
        assert [r.get("error") for r in replies] == [None, None, "rate_limited"], replies
        assert replies[2]["status"] == 429 and replies[2]["retry_after"] > 0
        # the same budget as HTTP requests
        assert client.get("/ready", headers={"X-API-Key": api_key}).status_code == 429


def test_websocket_origin_must_be_ours_or_configured(bundle_dir, api_key, tmp_path, no_face_jpeg) -> None:
    settings = make_settings(bundle_dir, tmp_path, api_key, cors_origins=["https://app.example"])
    with TestClient(create_app(settings)) as client:
        for origin in ("https://app.example", "http://testserver", None):  # configured, same origin, no browser
            headers = {"X-API-Key": api_key, **({"Origin": origin} if origin else {})}
            with client.websocket_connect("/v1/stream", headers=headers) as ws:
                ws.send_bytes(no_face_jpeg)
                assert ws.receive_json()["frame"] == 1
        for origin in ("https://evil.example", "http://testserver.evil.example", "null"):
            headers = {"X-API-Key": api_key, "Origin": origin}
            with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/v1/stream", headers=headers):
                pass
            assert info.value.code == 1008, origin


def test_every_html_page_has_security_headers(client) -> None:
    for path in ("/ui", "/docs", "/redoc"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), path
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp and "'unsafe-eval'" not in csp
        script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
        assert "'unsafe-inline'" not in script_src, csp
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert "'sha256-" in client.get("/docs").headers["content-security-policy"]  # Swagger UI's start-up script
    assert "content-security-policy" not in client.get("/health").headers  # JSON: no page, no policy


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/v1/feedback", b"{not json", "application/json"),
        ("/v1/feedback", b'{"request_id": 5}', "application/json"),
        ("/v1/identities/nobody/images", b"--x\r\nbroken", "multipart/form-data; boundary=x"),
        ("/v1/identities", b"\xff\xfe", "application/json"),
        ("/v1/verify", b"[" * 5000, "application/json"),
    ],
)
def test_without_a_key_the_answer_is_401_whatever_the_body(client, path, body, content_type) -> None:
    """The key is checked before the body is read: a client without one learns nothing about the body's rules."""
    r = client.post(path, content=body, headers={"Content-Type": content_type})
    assert r.status_code == 401, r.text
    assert "API key" in r.json()["detail"]


def test_openapi_declares_the_api_key_schemes(client) -> None:
    """Clients and fuzzers read from the schema how to authenticate, and which operations need it."""
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    kinds = {(s["type"], s.get("in"), s.get("name"), s.get("scheme")) for s in schemes.values()}
    assert ("apiKey", "header", "X-API-Key", None) in kinds
    assert ("http", None, None, "bearer") in kinds
    ops = {(p, m): op for p, item in spec["paths"].items() for m, op in item.items()}
    assert "security" not in ops[("/health", "get")]
    for (p, m), op in ops.items():
        if p.startswith("/v1/"):
            assert op.get("security"), f"{m.upper()} {p} declares no security requirement"
    feedback = ops[("/v1/feedback", "post")]["requestBody"]["content"]["application/json"]["schema"]
    assert {"request_id", "truth"} <= set(feedback["properties"])
