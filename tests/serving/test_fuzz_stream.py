"""Fuzzing the WebSocket ``/v1/stream`` with hypothesis: every frame gets one answer, the connection stays open.

Each example opens a real WebSocket to the service under uvicorn on 127.0.0.1 (with the key in its header) and
sends a random sequence of messages: image-like bytes from the image fuzzer's strategy (real encodings of random
size, mode and damage; garbage), text that is not JSON, JSON of the wrong shape, ``{"image": ...}`` with bad or good
base64, a late ``{"api_key": ...}`` message. The invariant: each message is answered, in order, by one JSON reply
carrying its frame number; an error reply says ``status`` 4xx, never 5xx; the server never closes the connection;
``/health`` answers 200 after every example.

A bounded, seeded run is part of ``make test``; ``make fuzz`` raises ``FUZZ_EXAMPLES`` and writes the figures
(examples, frames, replies by kind) under ``"stream"`` in ``FUZZ_REPORT``.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

import pytest
import requests
import websocket  # websocket-client
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.face.test_fuzz_images import FUZZ_EXAMPLES, FUZZ_SEED, encoded_images, merge_report
from tests.serving.serving_helpers import LiveServer, make_settings

pytestmark = pytest.mark.fuzz

BOUNDED_EXAMPLES = 12  # connections in make test, each with up to MAX_MESSAGES messages
MAX_MESSAGES = 4
FIGURES: Counter[str] = Counter()

_images = encoded_images()
_b64 = _images.map(lambda data: base64.b64encode(data).decode())
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
# (kind, opcode, payload): the kinds are counted for the report.
messages = st.one_of(
    _images.map(lambda data: ("binary image", websocket.ABNF.OPCODE_BINARY, data)),
    st.binary(max_size=64).map(lambda data: ("binary bytes", websocket.ABNF.OPCODE_BINARY, data)),
    st.text(max_size=200).map(lambda text: ("text", websocket.ABNF.OPCODE_TEXT, text)),
    _json.map(lambda value: ("json", websocket.ABNF.OPCODE_TEXT, json.dumps(value))),
    _b64.map(lambda b64: ("json image", websocket.ABNF.OPCODE_TEXT, json.dumps({"image": b64}))),
    st.text(max_size=30).map(lambda bad: ("json bad base64", websocket.ABNF.OPCODE_TEXT, json.dumps({"image": bad}))),
    st.text(max_size=30).map(lambda key: ("late api_key", websocket.ABNF.OPCODE_TEXT, json.dumps({"api_key": key}))),
)


@pytest.fixture(scope="module")
def stream_server(bundle_dir: Path, api_key: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The service under a real uvicorn, frames not rate-limited (the fuzzer sends them as fast as answered)."""
    from faceops.serving.app import create_app

    settings_ = make_settings(
        bundle_dir, tmp_path_factory.mktemp("stream-fuzz"), api_key, max_body_bytes=2 * 1024 * 1024,
        rate_limit_per_minute=0,
    )
    with LiveServer(create_app(settings_)) as server:
        yield server


@settings(
    max_examples=FUZZ_EXAMPLES or BOUNDED_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@seed(FUZZ_SEED)
@given(sent=st.lists(messages, min_size=1, max_size=MAX_MESSAGES))
def test_every_frame_is_answered_and_the_stream_stays_open(stream_server, api_key, sent) -> None:  # type: ignore[no-untyped-def]
    FIGURES["examples"] += 1
    url = stream_server.url.replace("http://", "ws://") + "/v1/stream"
    ws = websocket.create_connection(url, header=[f"X-API-Key: {api_key}"], timeout=120)
    try:
        for number, (kind, opcode, payload) in enumerate(sent, start=1):
            FIGURES[f"sent: {kind}"] += 1
            ws.send(payload, opcode=opcode)
            # recv raises WebSocketConnectionClosedException (or a timeout) if the server drops the stream.
            reply = json.loads(ws.recv())
            assert reply["frame"] == number, f"reply to frame {reply['frame']} where {number} was expected"
            if "error" in reply:
                FIGURES[f"reply: {reply['status']} {reply['error']}"] += 1
                assert 400 <= reply["status"] < 500, f"{kind}: {reply}"
                assert reply["detail"], "an error reply says what is wrong"
            else:
                FIGURES[f"reply: faces {min(len(reply['faces']), 2)}{'+' if len(reply['faces']) >= 2 else ''}"] += 1
                assert reply["width"] > 0 and reply["height"] > 0
    finally:
        ws.close()
    health = requests.get(f"{stream_server.url}/health", timeout=30)
    assert health.status_code == 200, f"/health answered {health.status_code}"


def teardown_module() -> None:
    if FIGURES:
        merge_report(
            "stream",
            {
                "examples": FUZZ_EXAMPLES or BOUNDED_EXAMPLES,
                "messages_per_connection": f"1-{MAX_MESSAGES}",
                "counts": dict(sorted(FIGURES.items())),
            },
        )
