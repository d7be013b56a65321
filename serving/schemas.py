"""Request and response bodies of the HTTP API (JSON); uploads may also come as multipart forms."""

from __future__ import annotations

from typing import Literal

from faceops.serving.enrolled import IDENTITY_PATTERN
from pydantic import BaseModel, ConfigDict, Field

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
    "IdentitiesResponse",
    "IdentityOut",
    "ImageJSON",
    "ImagesJSON",
    "RecognizeResponse",
    "Rejected",
    "VerifyJSON",
    "VerifyResponse",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageJSON(_In):
    image: str = Field(description="The image file's bytes, base64-encoded (a data: URL prefix is allowed).")


class VerifyJSON(_In):
    a: str = Field(description="First image, base64.")
    b: str = Field(description="Second image, base64.")


class ImagesJSON(_In):
    images: list[str] = Field(min_length=1, description="Images, base64.")


class EnrollJSON(ImagesJSON):
    identity: str = Field(pattern=IDENTITY_PATTERN, description="The identity's name (its id in the API).")


class FeedbackIn(_In):
    request_id: str = Field(min_length=1, max_length=64, description="The request_id a response returned.")
    face_index: int = Field(default=0, ge=0, description="Which face of the request (recognize).")
    truth: str = Field(
        min_length=1,
        max_length=128,
        description="The right identity of the face, or 'impostor' (not an enrolled person / not the same "
        "person), or 'genuine' (verify: the same person).",
    )


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
    removed_embeddings: int


class FeedbackOut(BaseModel):
    request_id: str
    face_index: int
    truth: str
    status: Literal["recorded"] = "recorded"


class ErrorResponse(BaseModel):
    error: str = Field(description="A stable machine-readable code, e.g. 'unsupported_image'.")
    detail: str | list = Field(description="What is wrong, for people.")
