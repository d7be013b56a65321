"""POST /v1/detect, /v1/recognize, /v1/verify: images in (multipart or base64 JSON), faces out.

``recognize`` takes ``top_k`` (candidates per face) as a query parameter, a form field or a JSON field alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from faceops.serving.deps import Client, Ctx, check_images, image_body_openapi, read_upload, run_inference
from faceops.serving.routes._common import Tracked, face_out, face_record
from faceops.serving.schemas import (
    MAX_TOP_K,
    TOP_K_DESCRIPTION,
    DetectResponse,
    ErrorResponse,
    ImageJSON,
    RecognizeJSON,
    RecognizeResponse,
    VerifyJSON,
    VerifyResponse,
)
from faceops.serving.service import AnalyzedFace, ServingState
from fastapi import APIRouter, HTTPException, Query, Request

from faceops.face.gallery import UNKNOWN

router = APIRouter(prefix="/v1", tags=["faces"])

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 401, 413, 415, 422, 429, 503)}


async def _one_image(
    request: Request, ctx: Ctx, track: Tracked, recognize: bool, top_k: int | None
) -> tuple[ServingState, tuple[int, int], list[AnalyzedFace]]:
    images, fields = await read_upload(request, RecognizeJSON if recognize else ImageJSON, {"image": False})
    if fields.get("top_k") is not None:
        if top_k is not None:
            raise HTTPException(422, "top_k is given twice (query and body): give it once")
        top_k = fields["top_k"]
    check_images(images["image"], 1)
    name, data = images["image"][0]
    state = track.use_state(ctx.service.state)
    if ctx.log.store_images:
        track.record.image = data

    def work() -> tuple[tuple[int, int], list[AnalyzedFace]]:
        pixels = ctx.service.decode(data, name)
        return (pixels.shape[1], pixels.shape[0]), ctx.service.analyze(pixels, state, recognize, top_k)

    size, faces = await run_inference(ctx, work)
    track.record.image_width, track.record.image_height = size
    return state, size, faces


async def _faces(
    request: Request, ctx: Ctx, endpoint: str, top_k: int | None = None
) -> DetectResponse | RecognizeResponse:
    recognize = endpoint == "recognize"
    async with Tracked(ctx, endpoint) as track:
        state, (w, h), faces = await _one_image(request, ctx, track, recognize, top_k)
        track.record.faces = [face_record(i, f) for i, f in enumerate(faces)]
        common = {
            "request_id": track.request_id,
            "model_version": state.model.version,
            "width": w,
            "height": h,
            "faces": [face_out(f) for f in faces],
        }
        if not recognize:
            return DetectResponse(**common)
        ctx.metrics.observe_decisions([f.match is not None and f.match.identity == UNKNOWN for f in faces])
        return RecognizeResponse(**common, threshold=state.model.threshold)


@router.post(
    "/detect",
    response_model=DetectResponse,
    responses=_ERRORS,
    openapi_extra=image_body_openapi({"image": False}),
)
async def detect(request: Request, ctx: Ctx, client: Client) -> DetectResponse | RecognizeResponse:
    """Every face in the image: box, landmarks and detection probability."""
    return await _faces(request, ctx, "detect")


@router.post(
    "/recognize",
    response_model=RecognizeResponse,
    responses=_ERRORS,
    openapi_extra=image_body_openapi(
        {"image": False},
        optional={"top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "description": TOP_K_DESCRIPTION}},
    ),
)
async def recognize(
    request: Request,
    ctx: Ctx,
    client: Client,
    top_k: int | None = Query(None, ge=1, le=MAX_TOP_K, description=TOP_K_DESCRIPTION),
) -> DetectResponse | RecognizeResponse:
    """Every face in the image identified against the gallery ('unknown' below the model's threshold).

    ``top_k`` may come as this query parameter or as a field of the body (form or JSON), not both.
    """
    return await _faces(request, ctx, "recognize", top_k)


@router.post(
    "/verify",
    response_model=VerifyResponse,
    responses=_ERRORS,
    openapi_extra=image_body_openapi({"a": False, "b": False}),
)
async def verify(request: Request, ctx: Ctx, client: Client) -> VerifyResponse:
    """Whether the subjects of two photos are the same person (cosine similarity against the threshold)."""
    async with Tracked(ctx, "verify") as track:
        images, _ = await read_upload(request, VerifyJSON, {"a": False, "b": False})
        pair = images["a"] + images["b"]
        check_images(pair, 2)
        state = track.use_state(ctx.service.state)

        def work() -> tuple[AnalyzedFace, AnalyzedFace]:
            (na, da), (nb, db) = pair
            a = ctx.service.subject(ctx.service.decode(da, na), state, na)
            return a, ctx.service.subject(ctx.service.decode(db, nb), state, nb)

        a, b = await run_inference(ctx, work)
        similarity = float(np.dot(a.embedding, b.embedding))
        same = similarity >= state.model.threshold
        decision = "same" if same else "different"
        track.record.faces = [
            face_record(i, f, decision, similarity=similarity) for i, f in enumerate((a, b))
        ]
        return VerifyResponse(
            request_id=track.request_id,
            model_version=state.model.version,
            similarity=round(similarity, 6),
            threshold=state.model.threshold,
            same=same,
            a=face_out(a),
            b=face_out(b),
        )
