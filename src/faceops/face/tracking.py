"""Face tracks across video frames: ids that persist while a face moves, and identities smoothed over time.

Detections of a new frame are matched to existing tracks by box overlap (IoU) and, when embeddings are given,
by cosine similarity, so a face keeps its id through fast motion (low IoU, high similarity) and two faces that
cross keep theirs (high IoU but low similarity is refused). Matching is greedy on the combined score, which is
optimal enough for the few faces of a frame. A track's identity is a vote over its recent recognitions, so one
blurred frame does not flip a name.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from faceops.face.alignment import align_faces
from faceops.face.detection import Face
from faceops.face.gallery import Gallery
from faceops.face.recognizer import FaceRecognizer

__all__ = ["FaceTracker", "Track", "TrackedFace", "box_iou", "recognize_frames"]

Box = tuple[float, float, float, float]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4) -> (N, M)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class Track:
    """One face followed across frames."""

    track_id: int
    box: Box
    embedding: np.ndarray | None = field(default=None, repr=False)
    hits: int = 1
    missed: int = 0
    labels: deque[str] = field(default_factory=lambda: deque(maxlen=15), repr=False)

    @property
    def identity(self) -> str | None:
        """The most frequent recent recognition (``None`` before any)."""
        return Counter(self.labels).most_common(1)[0][0] if self.labels else None


class FaceTracker:
    """Assigns persistent track ids to the faces of consecutive frames.

    Args:
        iou_threshold: boxes overlapping at least this much may continue a track.
        similarity_threshold: embeddings at least this similar may continue a track without overlap.
        max_missed: frames a track survives without a detection (occlusion, a missed detection).
        min_similarity: embeddings below this never continue a track, whatever the overlap.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        similarity_threshold: float = 0.6,
        max_missed: int = 15,
        min_similarity: float = 0.2,
    ) -> None:
        self.iou_threshold, self.similarity_threshold = iou_threshold, similarity_threshold
        self.max_missed, self.min_similarity = max_missed, min_similarity
        self.tracks: dict[int, Track] = {}
        self._next_id = 1

    def update(self, boxes: Sequence[Box], embeddings: np.ndarray | None = None) -> list[int]:
        """Match a frame's detections to tracks; returns one track id per box (new ids for new faces)."""
        ids: list[int] = [0] * len(boxes)
        live = list(self.tracks.values())
        pairs: list[tuple[float, int, int]] = []
        if boxes and live:
            iou = box_iou(np.array([t.box for t in live]), np.array(boxes))
            sim = self._similarities(live, embeddings, len(boxes))
            for ti in range(len(live)):
                for di in range(len(boxes)):
                    s = sim[ti, di]
                    if not np.isnan(s) and s < self.min_similarity:
                        continue
                    if iou[ti, di] >= self.iou_threshold or (
                        not np.isnan(s) and s >= self.similarity_threshold
                    ):
                        pairs.append((iou[ti, di] + (0.0 if np.isnan(s) else max(s, 0.0)), ti, di))
        used_t, used_d = set(), set()
        for _, ti, di in sorted(pairs, reverse=True):
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            track = live[ti]
            track.box, track.hits, track.missed = tuple(boxes[di]), track.hits + 1, 0  # type: ignore[assignment]
            if embeddings is not None:
                track.embedding = _blend(track.embedding, embeddings[di])
            ids[di] = track.track_id
        for ti, track in enumerate(live):
            if ti not in used_t:
                track.missed += 1
                if track.missed > self.max_missed:
                    del self.tracks[track.track_id]
        for di in range(len(boxes)):
            if di not in used_d:
                track = Track(
                    self._next_id,
                    tuple(boxes[di]),  # type: ignore[arg-type]
                    None if embeddings is None else np.asarray(embeddings[di], dtype=np.float32),
                )
                self.tracks[track.track_id] = track
                ids[di] = track.track_id
                self._next_id += 1
        return ids

    def label(self, track_id: int, identity: str) -> str:
        """Record a recognition of a track; returns the track's smoothed identity."""
        track = self.tracks[track_id]
        track.labels.append(identity)
        return track.identity or identity

    @staticmethod
    def _similarities(live: list[Track], embeddings: np.ndarray | None, n: int) -> np.ndarray:
        sim = np.full((len(live), n), np.nan)
        if embeddings is None:
            return sim
        for ti, track in enumerate(live):
            if track.embedding is not None:
                sim[ti] = np.asarray(embeddings) @ track.embedding
        return sim


def _blend(old: np.ndarray | None, new: np.ndarray, keep: float = 0.7) -> np.ndarray:
    """A running mean of a track's embedding (unit length), robust to one bad frame."""
    new = np.asarray(new, dtype=np.float32)
    mixed = new if old is None else keep * old + (1.0 - keep) * new
    return mixed / max(float(np.linalg.norm(mixed)), 1e-12)


@dataclass(frozen=True)
class TrackedFace:
    """A face of one frame with its track id and (smoothed) identity."""

    track_id: int
    face: Face
    identity: str | None
    score: float | None


def recognize_frames(
    frames: Iterable[np.ndarray],
    recognizer: FaceRecognizer,
    gallery: Gallery | None,
    threshold: float,
    tracker: FaceTracker | None = None,
) -> Iterator[list[TrackedFace]]:
    """Detect, embed, track and (with a gallery) recognise the faces of each RGB frame, in order."""
    tracker = tracker or FaceTracker()
    for frame in frames:
        faces = recognizer.detector.detect(frame)
        if not faces:
            tracker.update([])
            yield []
            continue
        embeddings = recognizer.embedder.embed(align_faces(frame, faces, recognizer.config.align))
        ids = tracker.update([f.box for f in faces], embeddings)
        matches = gallery.identify(embeddings, threshold, 1) if gallery is not None and len(gallery) else None
        out = []
        for i, (face, tid) in enumerate(zip(faces, ids, strict=True)):
            if matches is None:
                out.append(TrackedFace(tid, face, None, None))
                continue
            identity = tracker.label(tid, matches[i].identity)
            out.append(TrackedFace(tid, face, identity, matches[i].score))
        yield out
