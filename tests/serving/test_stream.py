"""WebSocket /v1/stream on frames of the Hamilton clip: faces per frame with ids that persist."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import pytest
from starlette.websockets import WebSocketDisconnect

from faceops.face.gallery import UNKNOWN


def _frames(video: Path, count: int, every: int) -> list[bytes]:
    capture = cv2.VideoCapture(str(video))
    out, index = [], 0
    while len(out) < count:
        ok, frame = capture.read()
        assert ok, "the clip ended early"
        if index % every == 0:
            out.append(cv2.imencode(".jpg", frame)[1].tobytes())
        index += 1
    capture.release()
    return out


def test_stream_tracks_faces_across_frames(client, api_key, key_header, datasets: Path) -> None:
    known = sorted((datasets / "video" / "known_faces").iterdir())  # the singer and the pianist, one still each
    for person in known:
        still = next(person.glob("*.png"))
        response = client.post(
            "/v1/identities",
            data={"identity": person.name},
            files=[("images", (still.name, still.read_bytes(), "image/png"))],
            headers=key_header,
        )
        assert response.status_code == 201 and response.json()["added"] == 1, response.text
    frames = _frames(datasets / "video" / "short_hamilton_clip.mp4", 4, 4)
    replies = []
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_json({"api_key": api_key})  # the key as the first message, as the web page sends it
        for i, frame in enumerate(frames):
            if i == 2:  # a bad frame in the middle: an error reply, and the stream goes on
                ws.send_bytes(b"not a frame")
                bad = ws.receive_json()
                assert (
                    bad["error"] == "unsupported_image"
                    and bad["status"] == 415
                    and "not an image" in bad["detail"]
                )
            if i == 3:
                ws.send_text('{"image": "' + base64.b64encode(frame).decode() + '"}')
            else:
                ws.send_bytes(frame)
            replies.append(ws.receive_json())
    assert [r["frame"] for r in replies] == [1, 2, 4, 5]
    assert all((r["width"], r["height"]) == (640, 360) for r in replies)
    # the most prominent face (the singer) keeps one track id in every frame
    singer = [max(r["faces"], key=lambda f: f["box"][2] - f["box"][0]) for r in replies]
    ids = [f["track_id"] for f in singer]
    assert len(set(ids)) == 1, replies
    # recognised as the enrolled singer in every frame; every other face is an enrolled name or 'unknown'
    assert [f["identity"] for f in singer] == ["lin_manuel_miranda"] * len(replies), replies
    assert {f["identity"] for r in replies for f in r["faces"]} <= {p.name for p in known} | {UNKNOWN}

    log = client.app.state.ctx.log
    rows = log.query(
        "SELECT COUNT(*), COUNT(DISTINCT r.request_id) FROM faces f JOIN requests r USING (request_id) "
        "WHERE r.endpoint='stream' AND f.track_id=?",
        (ids[0],),
    )
    assert rows[0][1] == 4
    for person in known:
        assert client.delete(f"/v1/identities/{person.name}", headers=key_header).status_code == 200


def test_stream_needs_a_key(client, api_key, no_face_jpeg) -> None:
    # no key: the first message is taken as a frame, and the connection is refused
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(no_face_jpeg)
        ws.receive_json()
    assert info.value.code == 1008 and "API key" in info.value.reason
    # a wrong key as the first message
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/v1/stream") as ws:
        ws.send_json({"api_key": api_key + "x"})
        ws.receive_json()
    assert info.value.code == 1008
    # the right key in the URL is refused: URLs end up in access logs
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect(f"/v1/stream?api_key={api_key}") as ws:
        ws.receive_json()
    assert info.value.code == 1008


def test_stream_takes_the_key_in_a_header(client, key_header, no_face_jpeg) -> None:
    with client.websocket_connect("/v1/stream", headers=key_header) as ws:
        ws.send_bytes(no_face_jpeg)
        reply = ws.receive_json()
    assert reply["frame"] == 1 and reply["faces"] == [], reply
