"""Request and response bodies of the HTTP API (JSON); uploads may also come as multipart forms.

Text fields are checked the same way whichever way they come: an identity name is stripped of surrounding
white space (JSON, form field or path), a feedback truth too, and control characters are refused.
"""

from __future__ import annotations

import re
from typing import Literal

from faceops.serving.enrolled import IDENTITY_PATTERN, check_identity
from pydantic import BaseModel, ConfigDict, Field, field_validator

from faceops.errors import GalleryError

__all__ = [
    "Candidate",
    "DeleteResponse",
    "DetectResponse",
    "EnrollJSON",
    "EnrollResponse",
    "ErrorResponse",
    "FaceOut",
    "FeedbackIn",
    "FeedbackOut",
    "IDENTITY_FIELD_PATTERN",
    "MAX_FACE_INDEX",
    "MAX_TOP_K",
    "TOP_K_DESCRIPTION",
    "IdentitiesResponse",
    "IdentityOut",
    "ImageJSON",
    "ImagesJSON",
    "RecognizeJSON",
    "RecognizeResponse",
    "Rejected",
    "VerifyJSON",
    "VerifyResponse",
]

# The identity pattern with the white space around a name allowed (it is stripped before the name is checked).
IDENTITY_FIELD_PATTERN = r"^\s*" + IDENTITY_PATTERN.removeprefix("^").removesuffix("$") + r"\s*$"
MAX_TOP_K = 20  # the bound of the service's own top_k setting
TOP_K_DESCRIPTION = (
    f"Candidates returned per recognised face, 1 to {MAX_TOP_K} (default: the service's top_k setting)."
)
MAX_FACE_INDEX = 2**31 - 1  # far beyond any photo's faces, and within SQLite's integers
# A truth: something besides white space, and no control characters (NUL, newlines, ...).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TRUTH_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageJSON(_In):
    image: str = Field(description="The image file's bytes, base64-encoded (a data: URL prefix is allowed).")


class RecognizeJSON(ImageJSON):
    top_k: int | None = Field(default=None, ge=1, le=MAX_TOP_K, description=TOP_K_DESCRIPTION)


class VerifyJSON(_In):
    a: str = Field(description="First image, base64.")
    b: str = Field(description="Second image, base64.")


class ImagesJSON(_In):
    images: list[str] = Field(min_length=1, description="Images, base64.")


class EnrollJSON(ImagesJSON):
    identity: str = Field(
        json_schema_extra={"pattern": IDENTITY_FIELD_PATTERN},
        description="The identity's name (its id in the API); surrounding white space is stripped.",
    )

    @field_validator("identity")
    @classmethod
    def _identity(cls, value: str) -> str:
        try:  # the service's own check, so a name is judged alike in JSON and in a form
            return check_identity(value)
        except GalleryError as exc:
            raise ValueError(str(exc)) from exc


class FeedbackIn(_In):
    request_id: str = Field(min_length=1, max_length=64, description="The request_id a response returned.")
    face_index: int = Field(
        default=0, ge=0, le=MAX_FACE_INDEX, description="Which face of the request (its faces' order)."
    )
    truth: str = Field(
        min_length=1,
        max_length=128,
        json_schema_extra={"pattern": _TRUTH_PATTERN},
        description="The right identity of the face, or 'impostor' (not an enrolled person / not the same "
        "person), or 'genuine' (verify: the same person). Surrounding white space is stripped; control "
        "characters are refused.",
    )

    @field_validator("truth")
    @classmethod
    def _truth(cls, value: str) -> str:
        if _CONTROL.search(value):
            raise ValueError("truth must not contain control characters (NUL, line breaks, ...)")
        if not value.strip():
            raise ValueError("truth must not be only white space")
        return value.strip()


class Candidate(BaseModel):
    identity: str
    score: float


class FaceOut(BaseModel):
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the uploaded image.")
    probability: float
    landmarks: list[list[float]]
    identity: str | None = Field(default=None, description="recognize: the match, or 'unknown'.")
    score: float | None = Field(
        default=None, description="recognize: cosine similarity of the best identity."
    )
    candidates: list[Candidate] | None = None
    track_id: int | None = Field(default=None, description="stream: id kept across frames.")


class _Response(BaseModel):
    request_id: str
    model_version: str


class DetectResponse(_Response):
    width: int
    height: int
    faces: list[FaceOut]


class RecognizeResponse(DetectResponse):
    threshold: float


class VerifyResponse(_Response):
    similarity: float
    threshold: float
    same: bool
    a: FaceOut
    b: FaceOut


class Rejected(BaseModel):
    image: str
    error: str
    detail: str


class IdentityOut(BaseModel):
    identity: str
    embeddings: int


class EnrollResponse(IdentityOut):
    added: int
    rejected: list[Rejected]


class IdentitiesResponse(BaseModel):
    identities: list[IdentityOut]


class DeleteResponse(BaseModel):
    identity: str
    removed_embeddings: int = Field(description="Gallery embeddings removed (every model's).")
    removed: dict[str, int] = Field(
        default_factory=dict,
        description="What each store lost: gallery_embeddings, photos, and log_requests, log_faces, log_feedback, "
        "log_images, log_embeddings (the request-log rows that named or showed the identity).",
    )


class FeedbackOut(BaseModel):
    request_id: str
    face_index: int
    truth: str
    status: Literal["recorded"] = "recorded"


class ErrorResponse(BaseModel):
    error: str = Field(description="A stable machine-readable code, e.g. 'unsupported_image'.")
    detail: str | list = Field(description="What is wrong, for people.")
