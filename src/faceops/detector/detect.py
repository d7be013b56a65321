"""The trained detector behind the same calls as MTCNN's :class:`faceops.face.detection.FaceDetector`.

``detect(image)`` and ``detect_batch(images)`` return :class:`Face` lists, most probable first, so a
:class:`faceops.face.recognizer.FaceRecognizer` can take this detector in MTCNN's place (``detector=``).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pydantic import Field
from torchvision.ops import nms

from faceops.detector.model import FaceNet, decode
from faceops.errors import ConfigError, InvalidModelFile, NoFaceDetected
from faceops.face.config import DetectorConfig, StrictConfig
from faceops.face.detection import Face, select_subject

__all__ = ["NetDetector", "NetDetectorConfig", "file_sha256"]

_MULTIPLE = 32  # the network's total stride


class NetDetectorConfig(StrictConfig):
    """Inference settings of the trained detector."""

    threshold: float = Field(default=0.5, gt=0.0, lt=1.0, description="Lowest centre score kept.")
    nms_iou: float = Field(default=0.4, gt=0.0, le=1.0, description="IoU above which the less probable box goes.")
    max_sides: tuple[int, ...] = Field(
        default=(640,),
        min_length=1,
        description="A small image pyramid: the photo is run once scaled down to each longer side given (never "
        "enlarged), and the faces of all levels merged by NMS; a detector trained on few steps is good on a narrow "
        "band of face sizes, which the levels move each face into.",
    )
    subject: str = Field(default="center_weighted", description="Subject policy, as DetectorConfig.subject.")


class NetDetector:
    """A :class:`FaceNet` with its weights, on CPU (or ``device``).

    Args:
        model: the network (put in eval mode here).
        config: inference settings.
        device: torch device string.
    """

    backend = "torch"  # what runs the network (the Detector protocol's attribute; serving reads it)

    def __init__(self, model: FaceNet, config: NetDetectorConfig | None = None, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.config = config or NetDetectorConfig()
        self.device = device

    @classmethod
    def from_config(cls, config: DetectorConfig, weights: str | Path, device: str = "cpu") -> NetDetector:
        """The detector a preprocessing names (``kind: faceops-net``): ``weights`` must be the file whose sha256
        the config holds, so the faces are those the model was measured with.

        Raises:
            ConfigError: the config names no trained detector.
            InvalidModelFile: the file is missing, unloadable or has another checksum.
        """
        if config.kind != "faceops-net" or config.net is None:
            raise ConfigError(f"the detector config names {config.kind!r}, not the trained 'faceops-net' detector")
        path = Path(weights)
        if not path.is_file():
            raise InvalidModelFile(f"the detector weights file {path} is missing")
        found = file_sha256(path)
        if found != config.net.weights_sha256:
            raise InvalidModelFile(
                f"{path}: sha256 {found[:16]}... is not the detector the preprocessing names "
                f"({config.net.weights_sha256[:16]}...): damaged or another detector"
            )
        settings = NetDetectorConfig(
            threshold=config.net.threshold,
            nms_iou=config.net.nms_iou,
            max_sides=config.net.max_sides,
            subject=config.subject,
        )
        return cls.load(path, settings, device)

    @classmethod
    def load(cls, path: str | Path, config: NetDetectorConfig | None = None, device: str = "cpu") -> NetDetector:
        """A detector from a checkpoint written by :func:`faceops.detector.train.save_checkpoint`."""
        try:
            payload: dict[str, Any] = torch.load(Path(path), map_location=device, weights_only=True)
            model = FaceNet(**payload["architecture"])
            model.load_state_dict(payload["state_dict"])
        except (OSError, EOFError, KeyError, RuntimeError, TypeError, ValueError, pickle.UnpicklingError) as exc:
            raise InvalidModelFile(f"cannot load detector weights {path}: {exc}") from exc
        return cls(model, config, device)

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in one RGB ``uint8`` image."""
        return self.detect_batch([image])[0]

    def detect_subject(self, image: np.ndarray, source: str | None = None) -> Face:
        """The subject face by the configured policy; raises :class:`NoFaceDetected`."""
        face = select_subject(self.detect(image), image.shape, self.config.subject)
        if face is None:
            raise NoFaceDetected(source)
        return face

    @torch.no_grad()
    def detect_batch(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[list[Face]]:
        """All faces of each image; images of equal padded shape run through the network together."""
        levels = [self._detect_level(images, side, batch_size) for side in self.config.max_sides]
        if len(levels) == 1:
            return levels[0]
        return [_merge([level[i] for level in levels], self.config.nms_iou) for i in range(len(images))]

    def _detect_level(self, images: Sequence[np.ndarray], max_side: int, batch_size: int) -> list[list[Face]]:
        prepared = [self._prepare(img, max_side) for img in images]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (canvas, _) in enumerate(prepared):
            groups.setdefault(canvas.shape, []).append(i)
        results: list[list[Face]] = [[] for _ in images]
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                batch = torch.from_numpy(np.stack([prepared[i][0] for i in chunk])).to(self.device)
                batch = batch.permute(0, 3, 1, 2).float() / 255.0
                found = decode(
                    self.model(batch),
                    self.config.threshold,
                    nms_iou=self.config.nms_iou,
                    scales=[1.0 / prepared[i][1] for i in chunk],
                )
                for i, faces in zip(chunk, found, strict=True):
                    results[i] = faces
        return results

    def _prepare(self, image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
        """Scale down past ``max_side`` and pad right/bottom to a multiple of 32; returns the scale used."""
        height, width = image.shape[:2]
        scale = min(1.0, max_side / max(height, width))
        if scale < 1.0:
            image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
        padded = np.zeros((-(-h // _MULTIPLE) * _MULTIPLE, -(-w // _MULTIPLE) * _MULTIPLE, 3), np.uint8)
        padded[:h, :w] = image
        return padded, scale


def _merge(levels: Sequence[Sequence[Face]], nms_iou: float) -> list[Face]:
    """The faces of several pyramid levels, overlapping ones reduced to the most probable."""
    faces = [f for level in levels for f in level]
    if not faces:
        return []
    boxes = torch.tensor([f.box for f in faces], dtype=torch.float32)
    scores = torch.tensor([f.probability for f in faces], dtype=torch.float32)
    return [faces[i] for i in nms(boxes, scores, nms_iou).tolist()]


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file (a detector's identity in the preprocessing config)."""
    from faceops.storage import sha256_of

    return sha256_of(Path(path))
