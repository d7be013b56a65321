"""Gallery management: enroll, add images, list, show and delete identities (each request in the request log)."""

from __future__ import annotations

from typing import Any

from faceops.serving.deps import Client, Ctx, check_images, image_body_openapi, read_upload, run_inference
from faceops.serving.errors import status_for
from faceops.serving.routes._common import Tracked
from faceops.serving.schemas import (
    IDENTITY_FIELD_PATTERN,
    DeleteResponse,
    EnrollJSON,
    EnrollResponse,
    ErrorResponse,
    IdentitiesResponse,
    IdentityOut,
    ImagesJSON,
    Rejected,
)
from fastapi import APIRouter, Path, Request

from faceops.errors import UnknownIdentity

router = APIRouter(prefix="/v1/identities", tags=["identities"])

_ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 415, 422, 429, 503)}
IdentityId = Path(description="The identity's name.", max_length=128)


async def _enroll(request: Request, ctx: Ctx, identity: str | None) -> EnrollResponse:
    new = identity is None
    async with Tracked(ctx, "enroll" if new else "add_images", status=201 if new else 200) as track:
        images, other = await read_upload(request, EnrollJSON if new else ImagesJSON, {"images": True})
        name: str = other["identity"] if identity is None else identity  # the model requires it when new
        photos = images["images"]
        check_images(photos, ctx.settings.max_images_per_request)
        track.use_state(ctx.service.state)
        name, added, errors = await run_inference(ctx, lambda: ctx.service.enroll(name, photos, new=new))
        total = ctx.service.state.gallery.count(name)  # not .identities: a sorted copy of every name
        ctx.metrics.gallery_size.set(ctx.service.state.gallery.identity_count)
        return EnrollResponse(
            identity=name,
            embeddings=total,
            added=added,
            rejected=[Rejected(image=n, error=status_for(e)[1], detail=str(e)) for n, e in errors.items()],
        )


@router.post(
    "",
    status_code=201,
    response_model=EnrollResponse,
    responses=_ERRORS,
    openapi_extra=image_body_openapi(
        {"images": True},
        {
            "identity": {
                "type": "string",
                "pattern": IDENTITY_FIELD_PATTERN,
                "description": "The identity's name; surrounding white space is stripped.",
            }
        },
    ),
)
async def enroll(request: Request, ctx: Ctx, client: Client) -> EnrollResponse:
    """Enroll a new identity with one or more photos (the subject face of each is used)."""
    return await _enroll(request, ctx, None)


@router.post(
    "/{identity}/images",
    response_model=EnrollResponse,
    responses=_ERRORS,
    openapi_extra=image_body_openapi({"images": True}),
)
async def add_images(
    request: Request, ctx: Ctx, client: Client, identity: str = IdentityId
) -> EnrollResponse:
    """Add photos to an enrolled identity."""
    return await _enroll(request, ctx, identity)


@router.get("", response_model=IdentitiesResponse, responses=_ERRORS)
async def list_identities(ctx: Ctx, client: Client) -> IdentitiesResponse:
    """Every enrolled identity with its number of embeddings."""
    async with Tracked(ctx, "list_identities"):
        return IdentitiesResponse(
            identities=[
                IdentityOut(identity=n, embeddings=c) for n, c in ctx.service.state.gallery.identities.items()
            ]
        )


@router.get("/{identity}", response_model=IdentityOut, responses=_ERRORS)
async def get_identity(ctx: Ctx, client: Client, identity: str = IdentityId) -> IdentityOut:
    """One identity."""
    async with Tracked(ctx, "get_identity"):
        count = ctx.service.state.gallery.count(identity)
        if not count:
            raise UnknownIdentity(f"identity {identity!r} is not enrolled")
        return IdentityOut(identity=identity, embeddings=count)


@router.delete("/{identity}", response_model=DeleteResponse, responses=_ERRORS)
async def delete_identity(ctx: Ctx, client: Client, identity: str = IdentityId) -> DeleteResponse:
    """Erase an identity: its embeddings (every model's), its stored photos, and every request-log row that names
    it or shows it (with their stored images and embeddings); an audit record says who did it, when and how many
    of what went (the name only as a salted hash). An unknown identity is 404 and changes nothing."""
    async with Tracked(ctx, "delete_identity") as track:
        track.use_state(ctx.service.state)
        removed = await run_inference(ctx, ctx.service.delete, identity, ctx.log, client)
        ctx.metrics.gallery_size.set(ctx.service.state.gallery.identity_count)
        return DeleteResponse(identity=identity, removed_embeddings=removed["gallery_embeddings"], removed=removed)
