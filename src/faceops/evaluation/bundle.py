"""The model bundle: everything needed to use a face model, saved and loaded as one folder.

A bundle is what training produces, what the MLflow registry stores (as the model's artifacts) and what serving
loads, so serving needs nothing else and guesses no defaults::

    <dir>/
      bundle.json      format, model id, preprocessing config, threshold, target FAR, the embedder record
                       (family, backend, file, embedding size, crop side, sha256 of the file), metadata
      weights.pt       InceptionResnetV1 state dict (backend torch; classification heads are dropped), or
      model.onnx       an ONNX network (backend onnxruntime: exported, int8, or another family)
      detector.pt      the trained FaceOps detector, only when the preprocessing names it (``detector.kind:
                       faceops-net``); bundle.json's ``detector`` record holds its sha256

Format 1 bundles (``weights.pt`` only, no embedder record) still load. Loading checks the network against the
record and the preprocessing (backend, crop side, embedding size, checksum), so a damaged or mismatched file is
refused with what is wrong instead of giving wrong embeddings. The detector file is checked the same way (against the
record and the checksum the preprocessing names), so the one preprocessing path travels with the model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from faceops.errors import ConfigError, InvalidModelFile
from faceops.face.backends import TORCH_PRECISIONS, OnnxNet, module_dim
from faceops.face.config import DEFAULT_TARGET_FAR, DEFAULT_THRESHOLD, PreprocessConfig
from faceops.face.detection import build_detector
from faceops.face.embedding import Embedder, load_backbone
from faceops.face.presets import (
    DEFAULT_MODEL_TARGET_FAR,
    DEFAULT_MODEL_THRESHOLD,
    FAMILY_INCEPTION,
    FAMILY_MOBILEFACENET,
    default_model_preprocess,
)
from faceops.face.recognizer import FaceRecognizer

if TYPE_CHECKING:
    from faceops.face.config import NetDetectorSettings

__all__ = ["BUNDLE_FORMAT", "FAMILY_INCEPTION", "FAMILY_MOBILEFACENET", "ModelBundle"]

BUNDLE_FORMAT = 2


@dataclass
class ModelBundle:
    """A face model with its preprocessing and calibrated decision threshold.

    Attributes:
        backbone: the embedding network: a ``torch.nn.Module`` (eval mode) or an
            :class:`~faceops.face.backends.OnnxNet`; ``preprocess.embedder.backend`` says which.
        preprocess: the preprocessing it was trained and evaluated with.
        threshold: cosine threshold for "same person" / known identity.
        target_far: the FAR the threshold was calibrated for, if it was calibrated.
        model_id: a stable id of the weights (used to stamp galleries).
        metadata: free-form facts (data version, run id, metrics).
        family: the network family (``inception_resnet_v1``, ``mobilefacenet``).
        detector_weights: the trained detector's weights file, when the preprocessing names it (``None`` for
            MTCNN, whose weights come with facenet-pytorch).
    """

    backbone: torch.nn.Module | OnnxNet
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    threshold: float = DEFAULT_THRESHOLD
    target_far: float | None = None
    model_id: str = "custom"
    metadata: dict[str, Any] = field(default_factory=dict)
    family: str = FAMILY_INCEPTION
    detector_weights: Path | None = None

    def with_detector(self, weights: str | Path, settings: NetDetectorSettings | None = None) -> ModelBundle:
        """This model with the trained detector ``weights`` in its preprocessing (``kind: faceops-net``); the
        rest of the preprocessing, the network and the threshold are kept. ``settings`` gives the decoding
        (threshold, NMS, pyramid); its checksum is replaced by the file's."""
        from faceops.detector.detect import file_sha256
        from faceops.face.config import DetectorConfig, NetDetectorSettings

        weights = Path(weights)
        if not weights.is_file():
            raise InvalidModelFile(f"the detector weights file {weights} is missing")
        base = settings.model_dump() if settings is not None else {}
        net = NetDetectorSettings.model_validate({**base, "weights_sha256": file_sha256(weights)})
        fields = {**self.preprocess.detector.model_dump(), "kind": "faceops-net", "net": net.model_dump(), "ladder": ()}
        preprocess = self.preprocess.model_copy(update={"detector": DetectorConfig.model_validate(fields)})
        return ModelBundle(
            backbone=self.backbone,
            preprocess=preprocess,
            threshold=self.threshold,
            target_far=self.target_far,
            model_id=self.model_id,
            metadata=dict(self.metadata),
            family=self.family,
            detector_weights=weights,
        )

    @property
    def backend(self) -> str:
        return "onnxruntime" if isinstance(self.backbone, OnnxNet) else "torch"

    @property
    def torch_module(self) -> torch.nn.Module:
        """The PyTorch network, for what needs one (fine-tuning, trunk caches)."""
        if not isinstance(self.backbone, torch.nn.Module):
            raise ConfigError(f"this {self.family} model runs on {self.backend}: it has no PyTorch network")
        return self.backbone

    @classmethod
    def pretrained(cls, weights: str | Path | None = None, preprocess: PreprocessConfig | None = None) -> ModelBundle:
        """The pretrained embedder from the settings (``FACEOPS_WEIGHTS``) with the default preprocessing and
        the default threshold (calibrated on LFW pairs at ``DEFAULT_TARGET_FAR``)."""
        backbone, model_id = load_backbone(weights)
        return cls(
            backbone=backbone,
            preprocess=preprocess or PreprocessConfig(),
            target_far=DEFAULT_TARGET_FAR,
            model_id=model_id,
        )

    @classmethod
    def default(cls, path: str | Path | None = None) -> ModelBundle:
        """The default model (:mod:`faceops.face.presets`): MobileFaceNet on ONNX Runtime from ``path`` or the
        settings (``FACEOPS_MOBILEFACENET``, else ``<shared_dir>/weights/mobilefacenet/MobileFaceNet.onnx``), with its
        preprocessing and the threshold calibrated for it on LFW; its id is the file's sha256, as a saved bundle's.

        Raises:
            InvalidModelFile: the file is missing, not an ONNX model, or not a 112x112 -> embedding network.
        """
        from faceops.face.backends import load_onnx_family
        from faceops.settings import get_settings

        path = Path(path) if path is not None else Path(get_settings().mobilefacenet_path())
        if not path.is_file():
            raise InvalidModelFile(
                f"the default model's file {path} is missing: set FACEOPS_MOBILEFACENET (or FACEOPS_SHARED_DIR) to "
                "where MobileFaceNet.onnx is, or give a model with --model / a config with --config"
            )
        preprocess = default_model_preprocess()
        net = load_onnx_family(path)
        if net.input_size is not None and net.input_size != preprocess.align.image_size:
            side = preprocess.align.image_size
            raise InvalidModelFile(f"{path} takes {net.input_size}x{net.input_size} crops, not {side}x{side}")
        return cls(
            backbone=net,
            preprocess=preprocess,
            threshold=DEFAULT_MODEL_THRESHOLD,
            target_far=DEFAULT_MODEL_TARGET_FAR,
            model_id="sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16],
            metadata={"source_file": str(path), "threshold_calibrated_on": "LFW pairs folds 1-8"},
            family=FAMILY_MOBILEFACENET,
        )

    def recognizer(self, device: str | None = None, detector_backend: str = "torch") -> FaceRecognizer:
        """A face recognizer that uses this model and its preprocessing.

        Args:
            detector_backend: what runs MTCNN's nets (``torch`` or ``onnxruntime``: the same weights and faces,
                ``tests/face/test_detection_onnx.py``); a trained FaceOps detector runs on torch either way.
        """
        embedder = Embedder(self.preprocess.embedder, device=device, model=self.backbone, model_id=self.model_id)
        detector = build_detector(
            self.preprocess.detector, self.detector_weights, device=device, backend=detector_backend
        )
        return FaceRecognizer(self.preprocess, embedder=embedder, detector=detector)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(self.backbone, OnnxNet):
            weights = directory / "model.onnx"
            self.backbone.save(weights)
            dim, side = self.backbone.dim, self.backbone.input_size
        else:
            weights = directory / "weights.pt"
            state = {k: v.detach().cpu() for k, v in self.backbone.state_dict().items() if not k.startswith("logits.")}
            torch.save(state, weights)
            dim, side = module_dim(self.backbone), None
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        detector = self._save_detector(directory)
        if self.model_id == "custom":
            self.model_id = "sha256:" + digest[:16]
        meta = {
            "format": BUNDLE_FORMAT,
            "model_id": self.model_id,
            "preprocess": self.preprocess.to_dict(),
            "threshold": self.threshold,
            "target_far": self.target_far,
            "embedder": {
                "family": self.family,
                "backend": self.backend,
                "file": weights.name,
                "dim": dim,
                "input_size": side,
                "sha256": digest,
            },
            "metadata": self.metadata,
        }
        if detector is not None:
            meta["detector"] = detector
        (directory / "bundle.json").write_text(json.dumps(meta, indent=2, default=str))
        return directory

    def _save_detector(self, directory: Path) -> dict[str, str] | None:
        """Copy the trained detector's file into the bundle; its record, or None for MTCNN."""
        config = self.preprocess.detector
        if config.kind == "mtcnn":
            return None
        if self.detector_weights is None or config.net is None:
            raise ConfigError("the preprocessing names the trained detector but the bundle has no detector weights")
        target = directory / _DETECTOR_FILE
        if Path(self.detector_weights).resolve() != target.resolve():
            shutil.copyfile(self.detector_weights, target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest != config.net.weights_sha256:
            raise InvalidModelFile(
                f"{self.detector_weights}: sha256 {digest[:16]}... is not the detector the preprocessing names "
                f"({config.net.weights_sha256[:16]}...)"
            )
        self.detector_weights = target
        return {"kind": config.kind, "file": _DETECTOR_FILE, "sha256": digest}

    @classmethod
    def load(cls, directory: str | Path) -> ModelBundle:
        """Read a bundle folder.

        Raises:
            ConfigError: not a bundle, or an unsupported format.
            InvalidModelFile: the network file is missing, damaged (checksum), unloadable, or disagrees with the
                bundle (backend, embedding size, crop side of the preprocessing).
        """
        directory = Path(directory)
        meta_path = directory / "bundle.json"
        if not meta_path.is_file():
            raise ConfigError(f"{directory} is not a FaceOps model bundle (no bundle.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{meta_path}: not valid JSON ({exc})") from exc
        if meta.get("format") not in (1, BUNDLE_FORMAT):
            raise ConfigError(f"{meta_path}: unsupported bundle format {meta.get('format')!r}")
        preprocess = PreprocessConfig.model_validate(meta["preprocess"])
        record = meta.get("embedder") or {"family": FAMILY_INCEPTION, "backend": "torch", "file": "weights.pt"}
        path = directory / str(record["file"])
        if not path.is_file():
            raise InvalidModelFile(f"{directory}: the network file {record['file']} is missing")
        if record.get("sha256") and hashlib.sha256(path.read_bytes()).hexdigest() != record["sha256"]:
            raise InvalidModelFile(f"{path}: its checksum differs from the bundle's record (damaged or replaced)")
        if record["backend"] != preprocess.embedder.backend:
            raise InvalidModelFile(
                f"{meta_path}: the network runs on {record['backend']!r} but the preprocessing says "
                f"{preprocess.embedder.backend!r}"
            )
        backbone: torch.nn.Module | OnnxNet
        if record["backend"] == "onnxruntime":
            backbone = OnnxNet(path)
            side = preprocess.align.image_size
            if backbone.input_size is not None and backbone.input_size != side:
                raise InvalidModelFile(
                    f"{path} takes {backbone.input_size}x{backbone.input_size} crops but the bundle's preprocessing "
                    f"makes {side}x{side} crops"
                )
            if record.get("dim") is not None and backbone.dim != record["dim"]:
                raise InvalidModelFile(f"{path} gives {backbone.dim}-d embeddings, the bundle declares {record['dim']}")
            found = "int8" if _quantized(backbone) else "fp32"
            if found != preprocess.embedder.precision:
                raise InvalidModelFile(
                    f"{path} is an {found} network but the bundle's preprocessing says "
                    f"{preprocess.embedder.precision!r}"
                )
        else:
            if preprocess.embedder.precision not in TORCH_PRECISIONS:
                raise InvalidModelFile(
                    f"{path} is a PyTorch network but the bundle's preprocessing says "
                    f"{preprocess.embedder.precision!r} (PyTorch runs {' or '.join(TORCH_PRECISIONS)})"
                )
            backbone, _ = load_backbone(path)
        return cls(
            backbone=backbone,
            detector_weights=_load_detector(directory, meta, preprocess),
            preprocess=preprocess,
            threshold=float(meta["threshold"]),
            target_far=meta.get("target_far"),
            model_id=meta["model_id"],
            metadata=meta.get("metadata", {}),
            family=str(record.get("family", FAMILY_INCEPTION)),
        )


_DETECTOR_FILE = "detector.pt"


def _load_detector(directory: Path, meta: dict[str, Any], preprocess: PreprocessConfig) -> Path | None:
    """The bundle's trained detector file, checked against its record and the preprocessing; None for MTCNN."""
    config = preprocess.detector
    if config.kind == "mtcnn" or config.net is None:
        return None
    record = meta.get("detector")
    if not record:
        raise InvalidModelFile(f"{directory}: the preprocessing names the trained detector but the bundle has none")
    path = directory / str(record["file"])
    if not path.is_file():
        raise InvalidModelFile(f"{directory}: the detector file {record['file']} is missing")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != record.get("sha256"):
        raise InvalidModelFile(f"{path}: its checksum differs from the bundle's record (damaged or replaced)")
    if digest != config.net.weights_sha256:
        raise InvalidModelFile(
            f"{path}: sha256 {digest[:16]}... is not the detector the preprocessing names "
            f"({config.net.weights_sha256[:16]}...)"
        )
    return path


_QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                            "MatMulInteger", "DynamicQuantizeLinear"})


def _quantized(net: OnnxNet) -> bool:
    """Whether an ONNX network holds int8 quantisation operators (its precision, read from the graph)."""
    import onnx

    graph = onnx.load_from_string(net.model_bytes).graph
    return any(node.op_type in _QUANTIZED_OPS for node in graph.node)
