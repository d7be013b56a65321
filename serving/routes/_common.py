"""Plumbing shared by the routes: request tracking (metrics + request log) and face -> JSON / log rows."""

from __future__ import annotations

import math
import time
import uuid

import anyio
from faceops.serving.deps import AppContext
from faceops.serving.errors import error_status
from faceops.serving.schemas import Candidate, FaceOut
from faceops.serving.service import AnalyzedFace, ServingState
from starlette.exceptions import HTTPException

from faceops.face.gallery import UNKNOWN
from faceops.telemetry.requestlog import FaceRecord, RequestRecord

__all__ = ["Tracked", "face_out", "face_record"]


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def face_out(face: AnalyzedFace, track_id: int | None = None) -> FaceOut:
    d = face.face.to_dict()
    out = FaceOut(box=d["box"], probability=d["probability"], landmarks=d["landmarks"], track_id=track_id)
    if face.match is not None:
        out.identity = face.match.identity
        out.score = _finite(face.match.score)
        out.candidates = [Candidate(identity=n, score=round(s, 6)) for n, s in face.match.candidates]
    return out


def face_record(
    index: int,
    face: AnalyzedFace,
    decision: str | None = None,
    track_id: int | None = None,
    similarity: float | None = None,
) -> FaceRecord:
    match = face.match
    if decision is None:
        decision = "detected" if match is None else ("unknown" if match.identity == UNKNOWN else "known")
    top1 = match.candidates[0] if match is not None and match.candidates else (None, similarity)
    return FaceRecord(
        face_index=index,
        det_probability=face.face.probability,
        face_size=face.face.size,
        brightness=face.brightness,
        blur=face.blur,
        top1_identity=top1[0],
        top1_similarity=_finite(top1[1]),
        margin=_finite(face.margin),
        decision=decision,
        predicted=match.identity if match else None,
        track_id=track_id,
        embedding=face.embedding,
    )


class Tracked:
    """Times a request, then counts it in the metrics and appends it to the request log (also on errors).

    Every route wraps its work in one, so each request that reaches a route is logged with the status the client
    gets: the route's own (``status``, e.g. 201), or for an exception the one the error handlers answer with
    (:func:`~faceops.serving.errors.error_status`). Requests refused before the route runs (no or bad API
    key, rate limit, a parameter FastAPI validates) are not logged. The log row is committed before the response
    is sent, so a logged response is never lost on a crash.
    """

    def __init__(self, ctx: AppContext, endpoint: str, status: int = 200) -> None:
        self.ctx, self.endpoint = ctx, endpoint
        self.request_id = uuid.uuid4().hex
        self.record = RequestRecord(request_id=self.request_id, endpoint=endpoint, status=status, latency_ms=0.0)
        self.sampled = ctx.log.sampled()

    def use_state(self, state: ServingState) -> ServingState:
        self.record.model_version = state.model.version
        self.record.model_id = state.model.recognizer.model_id
        self.record.threshold = state.model.threshold
        return state

    async def __aenter__(self) -> Tracked:
        self._t0 = time.perf_counter()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:  # type: ignore[no-untyped-def]
        seconds = time.perf_counter() - self._t0
        record = self.record
        if exc is not None:
            status, code = error_status(exc)
            detail = exc.detail if isinstance(exc, HTTPException) else exc
            record.status, record.error = status, f"{code}: {detail}"[:500]
        record.latency_ms = round(seconds * 1000.0, 3)
        self.ctx.metrics.observe(self.endpoint, record.status, seconds)
        self.ctx.metrics.faces.labels(self.endpoint).inc(len(record.faces))
        if self.sampled:
            started = time.perf_counter()
            await anyio.to_thread.run_sync(self.ctx.log.append, record)
            self.ctx.metrics.stage.labels("log").observe(time.perf_counter() - started)
        return False
