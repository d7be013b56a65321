"""Operations: /health (no key), /ready, /metrics (Prometheus), /v1/feedback (ground truth for monitoring)."""

from __future__ import annotations

import time

import anyio
from faceops.serving.deps import Client, Ctx, MaybeClient, json_body_openapi, read_json
from faceops.serving.routes._common import Tracked
from faceops.serving.schemas import ErrorResponse, FeedbackIn, FeedbackOut
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers (no API key needed)."""
    return {"status": "ok"}


@router.get(
    "/ready",
    responses={
        503: {"description": "no model loaded yet"},
        **{code: {"model": ErrorResponse} for code in (401, 429)},
    },
)
async def ready(ctx: Ctx, client: MaybeClient) -> JSONResponse:
    """Readiness: 200 once a model is loaded; says which, and whether the model source (MLflow) is reachable.

    Without an API key (Kubernetes' readiness probe) only the status, the model version and counts come back:
    no paths, errors, thresholds or gallery figures. With a key: everything below.

    When the source is unreachable the service keeps serving the loaded model: still 200, with
    ``source.reachable = false`` and the error. ``alerts`` lists state files found damaged at start (moved aside
    to ``repairs[].moved_to``; the gallery rebuilt, or a new request log started): empty when all is well.
    """
    service = ctx.service
    status = 200 if service.ready else 503
    if client is None:
        return JSONResponse(
            {
                "ready": service.ready,
                "model_version": service.state.model.version if service.ready else None,
                "source_reachable": service.source_error is None,
                "alerts": len(service.repairs),
            },
            status_code=status,
        )
    body: dict[str, object] = {
        "ready": service.ready,
        "source": {
            "description": service.source.description,
            "reachable": service.source_error is None,
            "error": service.source_error,
            "last_check_age_s": None
            if service.last_check is None
            else round(time.time() - service.last_check, 1),
        },
        "model_swaps": service.swaps,
        "store": {
            "description": service.store.description,
            "reachable": service.store_error is None,
            "error": service.store_error,
        },
        # A new model's gallery being built in the background (the old model answers meanwhile), and the last.
        "rebuild": service.rebuild.to_dict() if service.rebuild else None,
        "last_rebuild": service.last_rebuild.to_dict() if service.last_rebuild else None,
        # Damaged state files moved aside at start: the service runs, but someone should look (alert on this).
        "alerts": [
            f"{r.file} was damaged ({r.problem}); kept as {r.moved_to}; {r.action}" for r in service.repairs
        ],
        "repairs": [r.to_dict() for r in service.repairs],
    }
    if service.ready:
        state = service.state
        body["model"] = {
            "version": state.model.version,
            "model_id": state.model.recognizer.model_id,
            "threshold": state.model.threshold,
            "target_far": state.model.bundle.target_far,
            "loaded_at": state.model.loaded_at,
            "preprocess": state.model.bundle.preprocess.to_dict(),
        }
        body["gallery"] = {"identities": state.gallery.identity_count, "embeddings": len(state.gallery)}
    return JSONResponse(body, status_code=status)


@router.get("/metrics", response_class=Response, responses={code: {"model": ErrorResponse} for code in (401, 429)})
async def metrics(ctx: Ctx, client: Client) -> Response:
    """Prometheus metrics: requests, latency histograms, faces, unknown rate, model version, state repairs (also
    served without a key on the internal ``metrics_port``, for Prometheus)."""
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.post(
    "/v1/feedback",
    response_model=FeedbackOut,
    tags=["monitoring"],
    responses={code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 415, 422, 429)},
    openapi_extra=json_body_openapi(FeedbackIn),
)
async def feedback(request: Request, ctx: Ctx, client: Client) -> FeedbackOut:
    """The ground truth of a logged request's face: the right identity, 'impostor' or 'genuine'."""
    async with Tracked(ctx, "feedback"):  # logged like every request (its status, its errors)
        body = FeedbackIn(**await read_json(request, FeedbackIn))
        await anyio.to_thread.run_sync(ctx.log.add_feedback, body.request_id, body.truth, body.face_index)
        return FeedbackOut(request_id=body.request_id, face_index=body.face_index, truth=body.truth)
