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
ModelNotReady                  503     model_not_ready
request validation             422     invalid_request
anything unexpected            500     internal_error (logged; the service keeps running)
=============================  ======  ============================
"""

from __future__ import annotations

import logging

from faceops.serving.service import IdentityExists, ModelNotReady
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
from faceops.telemetry.requestlog import UnknownRequest

__all__ = ["install_error_handlers", "status_for"]

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


def install_error_handlers(app: FastAPI) -> None:
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
        return JSONResponse({"error": "invalid_request", "detail": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": "internal_error", "detail": f"{type(exc).__name__}: the error is logged"},
            status_code=500,
        )
