"""WebSocket /v1/stream: live video. Send frames (binary JPEG/PNG, or JSON ``{"image": base64}``), get each
frame's faces back with track ids that persist across frames and identities smoothed per track.

The API key comes in the ``X-API-Key`` (or ``Authorization: Bearer``) header or, from browsers, which cannot
set headers on a WebSocket, as the first message: ``{"api_key": "..."}`` (text). Never in the URL: a query
string ``api_key`` is refused (URLs end up in logs). A browser's ``Origin`` must be the service's own or one of
the configured CORS origins. Frames count against the key's rate limit like requests; a frame over it gets a
``rate_limited`` reply. A bad frame gets an error message and the connection stays open; frames are answered in
order, one at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from faceops.serving.deps import AppContext, authenticate, check_images, decode_base64, run_inference
from faceops.serving.errors import status_for
from faceops.serving.routes._common import Tracked, face_out, face_record
from faceops.serving.security import origin_allowed
from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect

from faceops.errors import FaceOpsError
from faceops.face.gallery import UNKNOWN
from faceops.face.tracking import FaceTracker

router = APIRouter(tags=["video"])
_AUTH_TIMEOUT_S = 10.0
_POLICY = 1008  # WebSocket close code: policy violation (no or bad key, refused origin)


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    ctx: AppContext = websocket.app.state.ctx
    host = websocket.client.host if websocket.client else "unknown"
    if "api_key" in websocket.query_params:
        await websocket.close(
            _POLICY, "API key in the URL refused: send the X-API-Key header or {\"api_key\": ...} first"
        )
        return
    if not origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host"), ctx.settings.cors_origins):
        await websocket.close(_POLICY, "origin not allowed (not this service's, nor a configured CORS origin)")
        return
    key = _header_key(websocket)
    first: Mapping[str, Any] | None = None
    accepted = key is None
    if key is None:  # the key comes as the first message (or not at all: anonymous access)
        await websocket.accept()
        try:
            first = await asyncio.wait_for(websocket.receive(), _AUTH_TIMEOUT_S)
        except TimeoutError:
            await websocket.close(_POLICY, "no API key: send {\"api_key\": ...} as the first message")
            return
        if first["type"] == "websocket.disconnect":
            return
        key = _key_message(first)
        if key is not None:
            first = None  # the key message is not a frame
    try:
        name = authenticate(ctx, key, host)
    except HTTPException as exc:
        await websocket.close(_POLICY, str(exc.detail)[:120])
        return
    if not accepted:
        await websocket.accept()
    bucket = name if name != "anonymous" else f"ip:{host}"
    tracker, frame = FaceTracker(), 0
    try:
        while True:
            message = first or await websocket.receive()
            first = None
            if message["type"] == "websocket.disconnect":
                return
            frame += 1
            wait = ctx.limiter.take(bucket)
            if wait > 0:
                reply: dict = {
                    "frame": frame,
                    "error": "rate_limited",
                    "status": 429,
                    "detail": f"rate limit exceeded: retry in {wait:.1f} s",
                    "retry_after": round(wait, 3),
                }
            else:
                reply = await _one_frame(ctx, tracker, frame, message)
            await websocket.send_text(json.dumps(reply))
    except WebSocketDisconnect:
        return


def _header_key(websocket: WebSocket) -> str | None:
    key = websocket.headers.get("x-api-key")
    auth = websocket.headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key or None


def _key_message(message: Mapping[str, Any]) -> str | None:
    """The key of a ``{"api_key": ...}`` text message, else ``None`` (then the message is a frame)."""
    text = message.get("text")
    if not text or not text.lstrip().startswith("{") or "api_key" not in text:
        return None
    try:
        value = json.loads(text).get("api_key")
    except (json.JSONDecodeError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) else None


async def _one_frame(ctx: AppContext, tracker: FaceTracker, frame: int, message: Mapping[str, Any]) -> dict:
    try:
        async with Tracked(ctx, "stream") as track:
            data = message.get("bytes")
            if data is None:
                try:
                    data = decode_base64(json.loads(message.get("text") or "")["image"], "image")
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise HTTPException(422, 'text frames must be JSON {"image": <base64>}') from exc
            if len(data) > ctx.settings.max_body_bytes:
                raise HTTPException(
                    413, f"frame of {len(data)} bytes is over the limit of {ctx.settings.max_body_bytes}"
                )
            check_images([("frame", data)], 1)
            state = track.use_state(ctx.service.state)

            def work():  # type: ignore[no-untyped-def]
                pixels = ctx.service.decode(data, f"frame {frame}")
                return pixels.shape, ctx.service.analyze(pixels, state, recognize=True)

            shape, faces = await run_inference(ctx, work)
            ids = tracker.update([f.face.box for f in faces], _stack([f.embedding for f in faces]))
            out = []
            for i, (face, tid) in enumerate(zip(faces, ids, strict=True)):
                smoothed = tracker.label(tid, face.match.identity) if face.match else None
                item = face_out(face, track_id=tid).model_dump()
                item["identity"] = smoothed
                out.append(item)
                track.record.faces.append(face_record(i, face, track_id=tid))
            ctx.metrics.observe_decisions(
                [f.match is not None and f.match.identity == UNKNOWN for f in faces]
            )
            track.record.image_width, track.record.image_height = shape[1], shape[0]
            return {
                "frame": frame,
                "request_id": track.request_id,
                "model_version": state.model.version,
                "width": shape[1],
                "height": shape[0],
                "threshold": state.model.threshold,
                "faces": out,
            }
    except HTTPException as exc:
        return {"frame": frame, "error": "bad_frame", "status": exc.status_code, "detail": exc.detail}
    except FaceOpsError as exc:
        status, code = status_for(exc)
        return {"frame": frame, "error": code, "status": status, "detail": str(exc)}


def _stack(vectors: list[np.ndarray]) -> np.ndarray | None:
    return np.stack(vectors) if vectors else None
