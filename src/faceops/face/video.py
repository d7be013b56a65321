"""Recognition on video: read frames from a webcam or file, track and recognise faces, write an annotated video.

:class:`VideoReader` yields every ``every``-th frame (RGB) of a source; :func:`annotate_video` runs them through
:func:`~faceops.face.tracking.recognize_frames` and writes each frame with its boxes, track ids and names to an
MP4 at the source's frame rate divided by ``every``.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceops.errors import ConfigError
from faceops.face.gallery import Gallery
from faceops.face.recognizer import FaceRecognizer
from faceops.face.render import draw_faces
from faceops.face.tracking import FaceTracker, TrackedFace, recognize_frames

__all__ = ["VideoReader", "VideoSummary", "annotate_video"]


class VideoReader:
    """The frames of a webcam or video file, as RGB arrays.

    Args:
        source: a webcam index (``0`` or ``"0"``) or a video file.
        every: yield every N-th frame (the others are read and dropped).
        max_frames: read at most this many frames of the source (before ``every``).

    Raises:
        ConfigError: the source cannot be opened, or ``every``/``max_frames`` is below 1.
    """

    def __init__(self, source: str | int, every: int = 1, max_frames: int | None = None) -> None:
        import cv2

        if every < 1 or (max_frames is not None and max_frames < 1):
            raise ConfigError(f"every ({every}) and max_frames ({max_frames}) must be at least 1")
        self.source, self.every = source, every
        index = int(source) if isinstance(source, int) or source.isdigit() else None
        self._capture = cv2.VideoCapture(index if index is not None else str(source))
        if not self._capture.isOpened():
            raise ConfigError(f"cannot open video source {source!r} (a webcam index or a readable video file)")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 25.0)
        total = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None  # 0 for a webcam: unknown
        self.limit = min(total, max_frames) if total and max_frames else (max_frames or total)

    @property
    def frames_to_process(self) -> int | None:
        """How many frames iteration yields, if the source's length is known."""
        return -(-self.limit // self.every) if self.limit else None

    def __iter__(self) -> Iterator[np.ndarray]:
        import cv2

        index = 0
        while self.limit is None or index < self.limit:
            ok, bgr = self._capture.read()
            if not ok:
                return
            if index % self.every == 0:
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class VideoSummary:
    """What :func:`annotate_video` did: frames and faces processed, speed, and each track's recognitions."""

    source: str
    out: Path
    frames: int
    faces: int
    seconds: float
    threshold: float
    tracks: dict[int, dict[str, int]] = field(default_factory=dict)

    @property
    def fps_processed(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "out": str(self.out),
            "frames": self.frames,
            "faces": self.faces,
            "fps_processed": round(self.fps_processed, 2),
            "threshold": self.threshold,
            "tracks": {str(tid): dict(names) for tid, names in sorted(self.tracks.items())},
        }


def annotate_video(
    video: VideoReader,
    out: Path,
    recognizer: FaceRecognizer,
    gallery: Gallery | None,
    threshold: float,
    tracker: FaceTracker | None = None,
    on_frame: Callable[[list[TrackedFace]], None] | None = None,
) -> VideoSummary:
    """Track and recognise the faces of ``video``'s frames and write them, annotated, to ``out`` (MP4).

    Args:
        video: the frames to process.
        out: the annotated video to write (its folder is created).
        recognizer: detection, alignment and embedding.
        gallery: the identities to recognise; ``None`` (or empty): track only.
        threshold: the similarity under which a face is ``unknown``.
        tracker: default: one that keeps a lost track for about half a second of the source.
        on_frame: called with each processed frame's faces (e.g. to advance a progress bar).

    Raises:
        ConfigError: no frame could be read from the source.
    """
    import cv2

    tracker = tracker or FaceTracker(max_missed=max(2, 15 // video.every))
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    tracks: defaultdict[int, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    n_frames = n_faces = 0
    started = time.perf_counter()
    # recognize_frames yields faces, not frames: tee pairs each frame with its faces (one frame held at a time)
    frames, to_recognise = itertools.tee(video)
    results = recognize_frames(to_recognise, recognizer, gallery, threshold, tracker)
    try:
        for frame, found in zip(frames, results, strict=True):
            if writer is None:
                fourcc = cv2.VideoWriter.fourcc(*"mp4v")
                writer = cv2.VideoWriter(str(out), fourcc, video.fps / video.every, (frame.shape[1], frame.shape[0]))
            labels = [f"#{t.track_id} {t.identity}" if t.identity else f"#{t.track_id}" for t in found]
            known = [bool(t.identity) and t.identity != "unknown" for t in found]
            canvas = np.asarray(draw_faces(frame, [t.face for t in found], labels, known))
            writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
            for t in found:
                tracks[t.track_id][t.identity or "-"] += 1
            n_frames += 1
            n_faces += len(found)
            if on_frame is not None:
                on_frame(found)
    finally:
        if writer is not None:
            writer.release()
    if n_frames == 0:
        raise ConfigError(f"no frames could be read from {video.source!r}")
    return VideoSummary(
        str(video.source),
        out,
        n_frames,
        n_faces,
        time.perf_counter() - started,
        threshold,
        {tid: dict(names) for tid, names in tracks.items()},
    )
