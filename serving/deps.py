"""Dependencies of the routes: the app context, API-key check with rate limit, and reading uploaded images.

Images come either as ``multipart/form-data`` file fields or as JSON with base64 strings; both end as
``(name, bytes)`` whose content is sniffed (the file name and declared type are never trusted). The other fields
are validated by the same pydantic model either way (unknown fields refused, names stripped, numbers parsed),
so a request means the same in JSON and in a form.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from faceops.serving.config import ServingSettings
from faceops.serving.metrics import ServiceMetrics
from faceops.serving.security import ApiKeys, RateLimiter, sniff_image
from faceops.serving.service import FaceService
from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from faceops.errors import EmptyImage
from faceops.telemetry.requestlog import RequestLogWriter

__all__ = [
    "AppContext",
    "Client",
    "MaybeClient",
    "Ctx",
    "authenticate",
    "check_images",
    "decode_base64",
    "image_body_openapi",
    "json_body_openapi",
    "read_json",
    "read_upload",
    "run_inference",
]


@dataclass
class AppContext:
    """Everything the routes share; built in the lifespan, stored on ``app.state.ctx``."""

    settings: ServingSettings
    service: FaceService
    log: RequestLogWriter
    metrics: ServiceMetrics
    keys: ApiKeys
    limiter: RateLimiter
    inference: anyio.CapacityLimiter


def _ctx(request: Request) -> AppContext:
    return request.app.state.ctx


Ctx = Annotated[AppContext, Depends(_ctx)]


def authenticate(ctx: AppContext, key: str | None, client_host: str) -> str:
    """The client's name, or 401 / 429 (429 also when the address made too many failed key attempts)."""
    blocked = ctx.limiter.failure_wait(client_host) if key else 0.0
    if blocked > 0:
        raise HTTPException(
            429,
            f"too many failed API key attempts from this address: retry in {blocked:.1f} s",
            headers={"Retry-After": str(math.ceil(blocked))},
        )
    name = ctx.keys.check(key)
    if name is None:
        if key:
            ctx.limiter.failed(client_host)
        raise HTTPException(
            401,
            "missing or invalid API key: send it in the X-API-Key header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    wait = ctx.limiter.take(name if name != "anonymous" else f"ip:{client_host}")
    if wait > 0:
        raise HTTPException(
            429, f"rate limit exceeded: retry in {wait:.1f} s", headers={"Retry-After": str(math.ceil(wait))}
        )
    return name


# Declared as OpenAPI security schemes (auto_error off: the 401 below says what is missing in our words), so that
# clients, the docs page and the fuzzers read from the schema which operations need a key and how to send it.
_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey", description="An API key.")
_BEARER = HTTPBearer(auto_error=False, scheme_name="Bearer", description="The same API key as a bearer token.")


def _require_key(
    request: Request,
    ctx: Ctx,
    key: Annotated[str | None, Security(_KEY_HEADER)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> str:
    if not key and bearer is not None:
        key = bearer.credentials.strip()
    return authenticate(ctx, key, request.client.host if request.client else "unknown")


Client = Annotated[str, Depends(_require_key)]


def _optional_key(
    request: Request,
    ctx: Ctx,
    key: Annotated[str | None, Security(_KEY_HEADER)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> str | None:
    """The client's name when a key is sent (a bad one is still 401), ``None`` when none is: for the probes that
    Kubernetes calls without one."""
    if not key and bearer is None:
        return None
    return _require_key(request, ctx, key, bearer)


MaybeClient = Annotated[str | None, Depends(_optional_key)]


async def run_inference(ctx: AppContext, fn, *args):  # type: ignore[no-untyped-def]
    """Run CPU-heavy work in the bounded inference thread pool, off the event loop."""
    return await anyio.to_thread.run_sync(fn, *args, limiter=ctx.inference)


async def read_upload(
    request: Request, model: type[BaseModel], file_fields: dict[str, bool]
) -> tuple[dict[str, list[tuple[str, bytes]]], dict[str, Any]]:
    """Images and other fields of a request, JSON (base64) or multipart.

    Args:
        model: the JSON body model (validated; its string/list fields named in ``file_fields`` hold base64).
        file_fields: field name -> whether it holds a list of images.

    Returns:
        field -> [(name, bytes)], and the other (non-image) fields.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        data = _validated(model, _parse_json(await request.body()))
        images: dict[str, list[tuple[str, bytes]]] = {}
        for field, many in file_fields.items():
            values = data.pop(field) if many else [data.pop(field)]
            images[field] = [
                (f"{field}[{i}]" if many else field, decode_base64(v, field)) for i, v in enumerate(values)
            ]
        return images, data
    if ctype == "multipart/form-data":
        # As a context manager: the uploads' spooled temporary files are closed on leaving it, not left to GC.
        async with request.form(max_files=ctx_max_files(request), max_fields=50) as form:
            images, other = {}, {}
            for field, many in file_fields.items():
                uploads = [u for u in form.getlist(field) if isinstance(u, UploadFile)]
                if not uploads:
                    raise HTTPException(422, f"missing file field {field!r} (multipart form)")
                if not many and len(uploads) > 1:
                    raise HTTPException(422, f"field {field!r} takes one image, got {len(uploads)}")
                images[field] = [(u.filename or field, await u.read()) for u in uploads]
            for key, value in form.multi_items():
                if key in file_fields:
                    continue
                if key in other:
                    raise HTTPException(422, f"form field {key!r} is given more than once")
                other[key] = value if isinstance(value, str) else None  # a file where text belongs: refused
        # The JSON model judges the other fields (the images stand in as placeholders, already read above).
        placeholders = {field: ["image"] if many else "image" for field, many in file_fields.items()}
        data = _validated(model, {**other, **placeholders})
        for field in file_fields:
            data.pop(field)
        return images, {key: data[key] for key in other}
    raise HTTPException(
        415,
        f"unsupported content type {ctype or '(none)'!r}: send multipart/form-data with "
        "image files, or application/json with base64 images",
    )


async def read_json(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    """A JSON body validated by ``model``, read only when called (after the key check, unlike a body parameter,
    which FastAPI parses before any dependency runs); 415 for another content type, 400 / 422 saying why."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("application/json", ""):
        raise HTTPException(415, f"unsupported content type {ctype!r}: send application/json")
    return _validated(model, _parse_json(await request.body()))


def json_body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` describing a required JSON body of ``model`` (for routes that read it with
    :func:`read_json`)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


def _parse_json(body: bytes) -> Any:
    """A JSON body, or 400 saying why not (any failure of the parser is the client's, never a 500)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"body is not valid UTF-8 (JSON must be): {exc}") from exc
    try:
        return json.loads(text)
    except RecursionError as exc:  # the parser recurses once per level of nesting
        raise HTTPException(400, "body is not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, and numbers over Python's digit limit
        raise HTTPException(400, f"body is not valid JSON: {exc}") from exc


def _validated(model: type[BaseModel], payload: Any) -> dict[str, Any]:
    try:
        return model.model_validate(payload).model_dump()
    except ValidationError as exc:
        raise HTTPException(
            422, [{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()]
        ) from exc


def ctx_max_files(request: Request) -> int:
    return request.app.state.ctx.settings.max_images_per_request


def decode_base64(value: str, field: str) -> bytes:
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(422, f"field {field!r} is not valid base64: {exc}") from exc
    if not data:
        raise EmptyImage("no bytes", field)
    return data


def check_images(images: list[tuple[str, bytes]], limit: int) -> None:
    """Sniff every image's content (415 for non-images) and bound how many come at once."""
    if len(images) > limit:
        raise HTTPException(413, f"{len(images)} images in one request, over the limit of {limit}")
    for name, data in images:
        if not data:
            raise EmptyImage("no bytes", name)
        sniff_image(data, name)


def image_body_openapi(
    fields: dict[str, bool], extra: dict[str, dict] | None = None, optional: dict[str, dict] | None = None
) -> dict[str, Any]:
    """OpenAPI ``requestBody`` for a route that reads images itself (multipart files or base64 JSON).

    Args:
        fields: image field -> whether it holds a list of images.
        extra: other required fields' schemas; ``optional``: other optional fields' schemas.
    """
    extra = extra or {}
    optional = optional or {}
    binary = {"type": "string", "format": "binary"}
    b64 = {"type": "string", "format": "byte", "description": "base64 image file"}

    def props(item: dict) -> dict:
        out = {f: ({"type": "array", "items": item} if many else item) for f, many in fields.items()}
        return {**out, **extra, **optional}

    required = list(fields) + list(extra)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": props(binary),
                        "required": required,
                        "additionalProperties": False,
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": props(b64),
                        "required": required,
                        "additionalProperties": False,
                    }
                },
            },
        }
    }
