"""Domain errors -> HTTP statuses with one JSON shape: ``{"error": code, "detail": message}``.

=============================  ======  ============================
error                          status  code
=============================  ======  ============================
EmptyImage                     400     empty_image
UnsupportedImage               415     unsupported_image
CorruptImage                   422     corrupt_image
ImageTooLarge                  413     image_too_large
NoFaceDetected                 422     no_face_detected
UnknownIdentity                404     unknown_identity
UnknownRequest                 404     unknown_request
IdentityExists                 409     identity_exists
GalleryError (other)           422     gallery_error
StoreUnavailable               503     database_unavailable
ModelNotReady                  503     model_not_ready
request validation             422     invalid_request
anything unexpected            500     internal_error (logged; the service keeps running)
=============================  ======  ============================

:func:`error_status` is the one mapping of an exception to the status the client gets: the handlers answer
with it and the request log records it, so the two never disagree. An exception no handler knows becomes a
500 JSON answer in :class:`_CatchAll`, inside Starlette's outermost error middleware, which would otherwise
re-raise it after answering and make the server drop the kept-alive connection.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import anyio
from faceops.serving.store import IdentityExists, ModelNotReady, StoreUnavailable
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceops.errors import (
    CorruptImage,
    EmptyImage,
    FaceOpsError,
    GalleryError,
    ImageTooLarge,
    InvalidImage,
    NoFaceDetected,
    UnknownIdentity,
    UnsupportedImage,
)
from faceops.telemetry.requestlog import RequestRecord, UnknownRequest

__all__ = ["error_status", "install_error_handlers", "status_for"]

log = logging.getLogger(__name__)

_MAP: tuple[tuple[type[Exception], int, str], ...] = (
    (EmptyImage, 400, "empty_image"),
    (UnsupportedImage, 415, "unsupported_image"),
    (CorruptImage, 422, "corrupt_image"),
    (ImageTooLarge, 413, "image_too_large"),
    (InvalidImage, 400, "invalid_image"),
    (NoFaceDetected, 422, "no_face_detected"),
    (UnknownIdentity, 404, "unknown_identity"),
    (UnknownRequest, 404, "unknown_request"),
    (IdentityExists, 409, "identity_exists"),
    (GalleryError, 422, "gallery_error"),
    (StoreUnavailable, 503, "database_unavailable"),  # a subclass of ModelNotReady: before it
    (ModelNotReady, 503, "model_not_ready"),
    (FaceOpsError, 400, "bad_request"),
)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


def status_for(exc: Exception) -> tuple[int, str]:
    """The HTTP status and error code of a domain error (500 for anything else)."""
    for cls, status, code in _MAP:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal_error"


def error_status(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and error code the client gets for an exception raised while answering a request."""
    if isinstance(exc, StarletteHTTPException):  # FastAPI's and Starlette's own (multipart errors, ...)
        return exc.status_code, _HTTP_CODES.get(exc.status_code, "error")
    if isinstance(exc, RequestValidationError):
        return 422, "invalid_request"
    if isinstance(exc, Exception):
        return status_for(exc)
    return 500, "internal_error"


def _internal_error(exc: BaseException) -> dict[str, str]:
    return {"error": "internal_error", "detail": f"{type(exc).__name__}: the error is logged"}


class _CatchAll:
    """Answers an exception that no handler took with a logged 500 JSON response and swallows it.

    Exceptions raised by ``receive`` belong to the layers outside (the body-size limit, a disconnect) and are
    passed on to them untouched, as is any exception raised after the response has started.
    """

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["faceops_t0"] = time.perf_counter()
        started = False
        from_outside: BaseException | None = None

        async def watched_receive():  # type: ignore[no-untyped-def]
            nonlocal from_outside
            try:
                return await receive()
            except BaseException as exc:
                from_outside = exc
                raise

        async def watched_send(message) -> None:  # type: ignore[no-untyped-def]
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        except Exception as exc:
            if started or exc is from_outside:
                raise
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            body = json.dumps(_internal_error(exc)).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})


async def _log_refused(request: Request, status: int, error: str) -> None:
    """Log a request whose parameters FastAPI refused before its route ran (routes log the others themselves).

    FastAPI checks the API key first, so only requests of known clients get here.
    """
    ctx, route = getattr(request.app.state, "ctx", None), request.scope.get("route")
    if ctx is None or route is None or not ctx.log.sampled():
        return
    t0 = getattr(request.state, "faceops_t0", None)
    seconds = time.perf_counter() - t0 if t0 is not None else 0.0
    endpoint = getattr(route, "name", "unknown")
    ctx.metrics.observe(endpoint, status, seconds)
    record = RequestRecord(uuid.uuid4().hex, endpoint, status, round(seconds * 1000.0, 3), error=error[:500])
    try:
        await anyio.to_thread.run_sync(ctx.log.append, record)
    except ModelNotReady as exc:  # the shared request log's database is down: the client still gets its 4xx
        log.warning("request not logged (%s): %s %s", exc, endpoint, status)


def install_error_handlers(app: FastAPI) -> None:
    """The JSON error handlers, and the middleware that turns an unhandled exception into a 500 answer."""
    app.add_middleware(_CatchAll)

    @app.exception_handler(FaceOpsError)
    async def _domain(request: Request, exc: FaceOpsError) -> JSONResponse:
        status, code = status_for(exc)
        return JSONResponse({"error": code, "detail": str(exc)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": _HTTP_CODES.get(exc.status_code, "error"), "detail": exc.detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        await _log_refused(request, 422, f"invalid_request: {problems}")
        return JSONResponse({"error": "invalid_request", "detail": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Reached only from outside _CatchAll (a middleware's own failure).
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(_internal_error(exc), status_code=500)
