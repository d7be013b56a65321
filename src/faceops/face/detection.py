"""Face detection with facenet-pytorch's MTCNN: every face with its box, probability and 5 landmarks.

Images are batched through MTCNN in groups of equal size (MTCNN's batching needs equal shapes); very large photos
are scaled down for detection only, and the boxes and landmarks are scaled back to the original pixels.

A photo where no face passes costs a whole genuine pair in verification, so the detector can retry it on a ladder
(``DetectorConfig.ladder``): lower thresholds, a lower probability floor, the photo enlarged. Each rung runs only on
the photos every rung before it missed, and :attr:`FaceDetector.ladder_counts` counts which rung found them.

MTCNN's three nets run in PyTorch (``backend="torch"``, as facenet-pytorch ships them) or in ONNX Runtime
(``backend="onnxruntime"``): the same weights exported once and kept in the cache folder (P-net with a free batch and image size),
so boxes and landmarks agree with PyTorch's to float rounding; facenet-pytorch's pyramid, crops and NMS are kept.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np
import torch

from faceops.errors import ConfigError, FaceOpsError, NoFaceDetected
from faceops.face.config import DetectorConfig, DetectorRung
from faceops.face.device import resolve_device
from faceops.settings import get_settings
from faceops.storage import atomic_file

__all__ = ["DETECTOR_BACKENDS", "Detector", "Face", "FaceDetector", "build_detector", "select_subject"]

DETECTOR_BACKENDS = ("torch", "onnxruntime")

logger = logging.getLogger(__name__)

# Photos whose longer side is above this are scaled down for detection (faces stay far above min_face_size).
_MAX_DETECT_SIDE = 1600


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    Attributes:
        box: (x1, y1, x2, y2).
        probability: MTCNN's face score.
        landmarks: (5, 2) array: left eye, right eye, nose, left mouth corner, right mouth corner
            (left/right as seen in the image).
    """

    box: tuple[float, float, float, float]
    probability: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """Face size: the geometric mean of the box sides, in pixels."""
        return float(np.sqrt(max(self.width, 0.0) * max(self.height, 0.0)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "probability": round(float(self.probability), 6),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


@runtime_checkable
class Detector(Protocol):
    """What the face path (:class:`~faceops.face.recognizer.FaceRecognizer`, serving, the CLI) calls on a detector:
    MTCNN's :class:`FaceDetector` and the trained :class:`~faceops.detector.detect.NetDetector` both are one.

    ``detect_batch`` gives each image's faces (box, probability, 5 landmarks), most probable first; ``backend``
    says what runs the network (``torch`` or ``onnxruntime``).
    """

    backend: str

    def detect(self, image: np.ndarray) -> list[Face]: ...

    def detect_batch(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[list[Face]]: ...

    def detect_subject(self, image: np.ndarray, source: str | None = None) -> Face: ...


def build_detector(
    config: DetectorConfig | None = None,
    weights: str | Path | None = None,
    device: str | None = None,
    backend: str = "torch",
) -> Detector:
    """The detector a preprocessing names: MTCNN (``kind: mtcnn``) or the trained FaceOps detector
    (``kind: faceops-net``) from its ``weights`` file, which must have the checksum the config names.

    Args:
        config: the preprocessing's detector settings.
        weights: the trained detector's weights file (a model bundle carries it); unused by MTCNN.
        device: torch device string; ``None`` uses the settings' device.
        backend: what runs MTCNN's nets (``torch`` or ``onnxruntime``); the trained detector runs on torch.

    Raises:
        ConfigError: the trained detector is named but no weights file is given.
        InvalidModelFile: its weights file is missing, damaged or not the one the config names (checksum).
    """
    config = config or DetectorConfig()
    if config.kind == "mtcnn":
        return FaceDetector(config, device=device, backend=backend)
    if weights is None:
        sha = config.net.weights_sha256[:16] if config.net else "?"
        raise ConfigError(
            f"the preprocessing names the trained FaceOps detector (weights sha256 {sha}...) but no weights file "
            "was given: load the model bundle that carries it"
        )
    # imported here: faceops.detector builds on this module (Face, select_subject)
    from faceops.detector.detect import NetDetector

    return NetDetector.from_config(config, weights, device=resolve_device(device))


class FaceDetector:
    """MTCNN over single images or batches.

    Args:
        config: thresholds, minimum face size, the retry ladder and the subject policy.
        device: torch device string; ``None`` uses the settings' device.
        backend: what runs the P/R/O-nets: ``torch`` or ``onnxruntime`` (CPU only; same weights, same results to
            float rounding).
        threads: ONNX Runtime intra-op threads per net; 0: torch's thread count when the detector is built.

    Attributes:
        ladder_counts: images looked at (``images``), found by the first pass (``first``), found by ladder rung
            *i* (``rung_1`` ...), and found by none (``none``), since construction or the last
            :meth:`reset_ladder_counts`.
    """

    def __init__(
        self, config: DetectorConfig | None = None, device: str | None = None, backend: str = "torch", threads: int = 0
    ) -> None:
        self.config = config or DetectorConfig()
        self.device = resolve_device(device)
        if backend not in DETECTOR_BACKENDS:
            raise ConfigError(f"unknown detector backend {backend!r}; choose one of {', '.join(DETECTOR_BACKENDS)}")
        if backend == "onnxruntime" and torch.device(self.device).type != "cpu":
            raise ConfigError(f"the onnxruntime detector backend runs on the CPU, not on {self.device}")
        self.backend = backend
        self._threads = threads or torch.get_num_threads()
        self._mtcnns: dict[tuple[float, float, float], Any] = {}
        self._mtcnn = self._mtcnn_for(self.config.thresholds)
        for rung in self.config.ladder:
            self._mtcnn_for(rung.thresholds or self.config.thresholds)
        self.ladder_counts: dict[str, int] = {}
        self.reset_ladder_counts()

    def reset_ladder_counts(self) -> None:
        """Set every counter of :attr:`ladder_counts` to zero."""
        rungs = {f"rung_{i}": 0 for i in range(1, len(self.config.ladder) + 1)}
        self.ladder_counts = {"images": 0, "first": 0, **rungs, "none": 0}

    def _mtcnn_for(self, thresholds: tuple[float, float, float]) -> Any:
        # One MTCNN per set of thresholds (facenet-pytorch reads them from the instance); each loads its own
        # small P/R/O-nets (under 2 MB), once, when the detector is built.
        if thresholds not in self._mtcnns:
            from facenet_pytorch import MTCNN

            mtcnn = MTCNN(
                min_face_size=self.config.min_face_size,
                thresholds=list(thresholds),
                factor=self.config.factor,
                keep_all=True,
                device=self.device,
            )
            if self.backend == "onnxruntime":
                for name in ("pnet", "rnet", "onet"):
                    setattr(mtcnn, name, _OrtNet(getattr(mtcnn, name), name, self._threads))
            self._mtcnns[thresholds] = mtcnn
        return self._mtcnns[thresholds]

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in one RGB ``uint8`` image, most probable first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray], batch_size: int = 16) -> list[list[Face]]:
        """All faces in each image; images of equal shape go through MTCNN together.

        An image (after scaling very large ones down) whose shorter side is under ``min_face_size`` has no faces.
        Images where no face passes go down the configured ladder, rung by rung, until one finds a face.
        """
        results: list[list[Face]] = [[] for _ in images]
        prepared: list[tuple[np.ndarray, float]] = [_scale_for_detection(img) for img in images]
        self._run(self._mtcnn, prepared, range(len(images)), self.config.min_probability, results, batch_size)
        missed = [i for i, faces in enumerate(results) if not faces]
        self.ladder_counts["images"] += len(images)
        self.ladder_counts["first"] += len(images) - len(missed)
        for number, rung in enumerate(self.config.ladder, start=1):
            if not missed:
                break
            self._climb(rung, prepared, missed, results, batch_size)
            found = [i for i in missed if results[i]]
            self.ladder_counts[f"rung_{number}"] += len(found)
            missed = [i for i in missed if not results[i]]
        self.ladder_counts["none"] += len(missed)
        return results

    def detect_subject(self, image: np.ndarray, source: str | None = None) -> Face:
        """The subject face of a photo by the configured policy; raises :class:`NoFaceDetected`."""
        face = select_subject(self.detect(image), image.shape, self.config.subject)
        if face is None:
            raise NoFaceDetected(source)
        return face

    def _climb(
        self,
        rung: DetectorRung,
        prepared: Sequence[tuple[np.ndarray, float]],
        missed: Sequence[int],
        results: list[list[Face]],
        batch_size: int,
    ) -> None:
        """Run one ladder rung on the images in ``missed``, writing what it finds into ``results``."""
        mtcnn = self._mtcnn_for(rung.thresholds or self.config.thresholds)
        min_probability = self.config.min_probability if rung.min_probability is None else rung.min_probability
        if rung.upscale == 1.0:
            self._run(mtcnn, prepared, missed, min_probability, results, batch_size)
            return
        enlarged: dict[int, tuple[np.ndarray, float]] = {}
        for i in missed:
            image, scale = prepared[i]
            height, width = image.shape[:2]
            # A photo that would pass the size cap once enlarged is already large enough for its faces to be
            # searched, enlarging it would only cost time; one still under min_face_size enlarged holds none.
            fits = max(height, width) * rung.upscale <= _MAX_DETECT_SIDE
            if fits and min(height, width) * rung.upscale >= self.config.min_face_size:
                size = (round(width * rung.upscale), round(height * rung.upscale))
                enlarged[i] = (cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), scale * size[0] / width)
        sized: list[tuple[np.ndarray, float]] = [enlarged.get(i, prepared[i]) for i in range(len(prepared))]
        self._run(mtcnn, sized, list(enlarged), min_probability, results, batch_size)

    def _run(
        self,
        mtcnn: Any,
        prepared: Sequence[tuple[np.ndarray, float]],
        indices: Sequence[int],
        min_probability: float,
        results: list[list[Face]],
        batch_size: int,
    ) -> None:
        """Detect faces in ``prepared[i]`` for each ``i`` in ``indices``, in batches of equal shape."""
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index in indices:
            small = prepared[index][0]
            # MTCNN's pyramid has no level for an image whose shorter side is under the minimum face size (and
            # facenet-pytorch then fails on an empty torch.cat): such an image cannot hold a detectable face.
            if min(small.shape[:2]) >= self.config.min_face_size:
                groups[small.shape].append(index)
        for group in groups.values():
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                stack = np.stack([prepared[i][0] for i in chunk])
                boxes, probs, points = mtcnn.detect(stack, landmarks=True)
                for i, b, p, pts in zip(chunk, boxes, probs, points, strict=True):
                    results[i] = _faces(b, p, pts, 1.0 / prepared[i][1], min_probability)


_EXPORTED: dict[str, bytes] = {}  # MTCNN's nets as ONNX, by _export_key (exporting the three: 1.5 s on a quiet machine)
_EXPORT_LOCK = threading.Lock()
_OPSET = 17
# example input and dynamic axes per net; P-net is fully convolutional (any image of at least 12x12 pixels)
_NET_SHAPES: dict[str, tuple[tuple[int, ...], dict[int, str], tuple[str, ...]]] = {
    "pnet": ((1, 3, 60, 80), {0: "batch", 2: "height", 3: "width"}, ("reg", "prob")),
    "rnet": ((2, 3, 24, 24), {0: "batch"}, ("reg", "prob")),
    "onet": ((2, 3, 48, 48), {0: "batch"}, ("reg", "landmarks", "prob")),
}


def _export_key(net: torch.nn.Module, name: str) -> str:
    """What the exported file depends on: the net, its weights, the exporter (torch's version) and its settings."""
    digest = hashlib.sha256(f"{name}|{torch.__version__}|opset{_OPSET}|{_NET_SHAPES[name]}".encode())
    for key, tensor in net.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def _export_net(net: torch.nn.Module, name: str, fresh: bool = False) -> bytes:
    """One of MTCNN's nets as ONNX bytes, exported once per process and kept in the cache folder
    (``FACEOPS_CACHE_DIR``/onnx) by :func:`_export_key`, so a service that starts again, or another process beside
    it, skips the export; ``fresh`` ignores both (a cached file that ONNX Runtime refused)."""
    key = _export_key(net, name)
    cached = get_settings().cache_dir / "onnx" / f"mtcnn-{name}-{key}.onnx"
    with _EXPORT_LOCK:
        if fresh:
            _EXPORTED.pop(key, None)
        elif key not in _EXPORTED and cached.is_file():
            _EXPORTED[key] = cached.read_bytes()
        if key not in _EXPORTED:
            _EXPORTED[key] = _export(net, name)
            try:
                with atomic_file(cached) as handle:
                    handle.write(_EXPORTED[key])
            except OSError as exc:  # a read-only cache folder costs the next start an export, nothing else
                logger.warning("could not keep MTCNN's %s as ONNX in %s: %s", name, cached.parent, exc)
        return _EXPORTED[key]


def _export(net: torch.nn.Module, name: str) -> bytes:
    shape, axes, outputs = _NET_SHAPES[name]
    out_axes = {0: "batch", 2: "out_height", 3: "out_width"} if name == "pnet" else {0: "batch"}
    try:
        # The TorchScript exporter: it took 13 s for the three nets on a loaded 2-core machine where
        # torch.export's took 85 s (P-net's free image size); its deprecation warning says nothing about the
        # result, which the tests compare with PyTorch's on real photos.
        with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
            warnings.simplefilter("ignore", DeprecationWarning)
            path = Path(tmp) / f"{name}.onnx"
            torch.onnx.export(
                net.eval().cpu(),
                (torch.zeros(shape),),
                path,
                dynamo=False,
                input_names=["input"],
                output_names=list(outputs),
                dynamic_axes={"input": axes, **{o: out_axes for o in outputs}},
                opset_version=_OPSET,
            )
            return path.read_bytes()
    except Exception as exc:  # noqa: BLE001 - the exporter fails in many ways; say which
        raise FaceOpsError(f"exporting MTCNN's {name} to ONNX failed: {type(exc).__name__}: {exc}") from exc


class _OrtNet(torch.nn.Module):
    """One of MTCNN's nets run by ONNX Runtime, in place of the module facenet-pytorch calls.

    It keeps the original module as a child: facenet-pytorch reads the P-net's parameter dtype, and hooks
    (``benchmarks/detector.py``) see the same calls.
    """

    def __init__(self, net: torch.nn.Module, name: str, threads: int) -> None:
        import onnxruntime as ort

        super().__init__()
        self.net = net
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # torch runs between the calls
        try:
            self.session = ort.InferenceSession(_export_net(net, name), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises its own error types for a damaged model
            logger.warning("ONNX Runtime refused MTCNN's %s as kept or exported (%s): exported anew", name, exc)
            self.session = ort.InferenceSession(
                _export_net(net, name, fresh=True), options, providers=["CPUExecutionProvider"]
            )

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pixels = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        return tuple(torch.from_numpy(out) for out in self.session.run(None, {"input": pixels}))


def _faces(boxes: Any, probs: Any, points: Any, scale: float, min_probability: float) -> list[Face]:
    if boxes is None:
        return []
    faces = [
        Face(
            box=tuple(float(v) * scale for v in box),  # type: ignore[arg-type]
            probability=float(prob),
            landmarks=np.asarray(pts, dtype=np.float32) * scale,
        )
        for box, prob, pts in zip(boxes, probs, points, strict=True)
        if prob is not None and float(prob) >= min_probability
    ]
    return sorted(faces, key=lambda f: -f.probability)


def _scale_for_detection(image: np.ndarray) -> tuple[np.ndarray, float]:
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= _MAX_DETECT_SIDE:
        return image, 1.0
    scale = _MAX_DETECT_SIDE / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def select_subject(faces: Sequence[Face], image_shape: tuple[int, ...], policy: str) -> Face | None:
    """Pick the subject face of a photo.

    Args:
        faces: candidate faces.
        image_shape: (H, W, ...) of the image they were found in.
        policy: 'largest' (box area), 'center' (closest box centre to the image centre) or 'center_weighted'
            (area minus twice the squared centre offset, as facenet-pytorch's ``center_weighted_size``).
    """
    if not faces:
        return None
    height, width = image_shape[:2]
    boxes = np.array([f.box for f in faces], dtype=np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
    offset_sq = ((centres - np.array([width / 2, height / 2])) ** 2).sum(axis=1)
    if policy == "largest":
        score = areas
    elif policy == "center":
        score = -offset_sq
    elif policy == "center_weighted":
        score = areas - 2.0 * offset_sq
    else:
        raise ValueError(f"unknown subject policy {policy!r}")
    return faces[int(np.argmax(score))]
