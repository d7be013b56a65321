"""WebSocket /v1/stream: live video. Send frames (binary JPEG/PNG, or JSON ``{"image": base64}``), get each
frame's faces back with track ids that persist across frames and identities smoothed per track.

The API key comes as ``?api_key=`` (browsers cannot set headers on a WebSocket) or the ``X-API-Key`` header.
A bad frame gets an error message and the connection stays open; frames are answered in order, one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from faceops.serving.deps import AppContext, authenticate, check_images, decode_base64, run_inference
from faceops.serving.errors import status_for
from faceops.serving.routes._common import Tracked, face_out, face_record
from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect

from faceops.errors import FaceOpsError
from faceops.face.gallery import UNKNOWN
from faceops.face.tracking import FaceTracker

router = APIRouter(tags=["video"])


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    ctx: AppContext = websocket.app.state.ctx
    key = websocket.query_params.get("api_key") or websocket.headers.get("x-api-key")
    try:
        authenticate(ctx, key, websocket.client.host if websocket.client else "unknown")
    except HTTPException as exc:
        await websocket.close(code=1008, reason=str(exc.detail)[:120])
        return
    await websocket.accept()
    tracker, frame = FaceTracker(), 0
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            frame += 1
            reply = await _one_frame(ctx, tracker, frame, message)
            await websocket.send_text(json.dumps(reply))
    except WebSocketDisconnect:
        return


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
