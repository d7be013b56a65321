"""Typed run configs: the preprocessing that travels with a model, loaded from YAML with unknown keys refused.

One :class:`PreprocessConfig` drives detection, subject choice, alignment and normalisation everywhere (CLI,
training, evaluation, serving). It is saved next to every model and read back by whoever uses that model, so the
pixels a model sees in production are the pixels it was evaluated on.

:class:`StrictConfig` (unknown keys refused, instances frozen) and :func:`load_yaml_config` are the base and the
loader of every typed config of FaceOps: training's, the monitor's, the data import's, splits and validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from faceops.errors import ConfigError

__all__ = [
    "DEFAULT_TARGET_FAR",
    "DEFAULT_THRESHOLD",
    "AlignConfig",
    "DetectorConfig",
    "DetectorRung",
    "EmbedderConfig",
    "NetDetectorSettings",
    "PreprocessConfig",
    "StrictConfig",
    "load_yaml_config",
]

_M = TypeVar("_M", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base of every typed config: unknown keys are refused (a typo never passes silently) and instances are
    frozen (a config logged with a run is the config that ran)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AddedFieldsConfig(StrictConfig):
    """A config that gained fields after configs of its kind were first saved: each field named in
    ``omit_at_default`` stays out of the dump while it holds its default, so the dump (and the preprocessing
    fingerprint, the caches, galleries and logged params keyed by it) of every config saved before the field
    existed is unchanged; any other value is in the dump."""

    omit_at_default: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _omit_added_fields_at_default(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        fields = type(self).model_fields
        for name in self.omit_at_default:
            if getattr(self, name) == fields[name].get_default(call_default_factory=True):
                data.pop(name, None)
        return data


class DetectorRung(StrictConfig):
    """One retry of the detector on a photo where the rungs before it found no face.

    A field left ``None`` keeps the detector's own setting.
    """

    thresholds: tuple[float, float, float] | None = Field(default=None, description="P-, R- and O-net thresholds.")
    min_probability: float | None = Field(default=None, ge=0.0, le=1.0, description="Faces below are dropped.")
    upscale: float = Field(
        default=1.0,
        ge=1.0,
        le=4.0,
        description="Enlarge the photo by this factor first, so faces under min_face_size become searchable; a "
        "photo whose longer side would pass the detector's size cap is not enlarged and skips this rung.",
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: tuple[float, float, float] | None) -> tuple[float, float, float] | None:
        if value is not None and not all(0.0 < t < 1.0 for t in value):
            raise ValueError("each detection threshold must be in (0, 1)")
        return value


DETECTOR_KINDS = ("mtcnn", "faceops-net")


class NetDetectorSettings(StrictConfig):
    """The trained FaceOps detector (:mod:`faceops.detector`) a preprocessing names: which weights (by checksum;
    the file travels in the model bundle) and how its output is decoded."""

    weights_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of the detector's weights file: the detector's identity in the fingerprint, checked "
        "against the file when it is loaded.",
    )
    threshold: float = Field(default=0.5, gt=0.0, lt=1.0, description="Lowest centre score kept.")
    nms_iou: float = Field(default=0.4, gt=0.0, le=1.0, description="IoU above which the less probable box goes.")
    max_sides: tuple[int, ...] = Field(
        default=(640,), min_length=1, description="Longer sides of the detector's small image pyramid."
    )


class DetectorConfig(AddedFieldsConfig):
    """Which face detector runs and its settings: MTCNN (facenet-pytorch, the default) or the trained FaceOps
    detector (``kind: faceops-net`` with ``net``). The MTCNN fields also hold the subject policy and the minimum
    face size; the net reads ``subject`` only."""

    # added after configs were first saved; MTCNN without a ladder dumps as it always did
    omit_at_default: ClassVar[tuple[str, ...]] = ("kind", "net", "ladder")

    kind: Literal["mtcnn", "faceops-net"] = Field(
        default="mtcnn",
        description="The detector: part of the fingerprint, so a gallery made with one detector is never searched "
        "with faces of another.",
    )
    net: NetDetectorSettings | None = Field(default=None, description="The trained detector (kind faceops-net).")

    min_face_size: int = Field(default=20, ge=8, description="Smallest face side in pixels that is searched for.")
    thresholds: tuple[float, float, float] = Field(
        default=(0.6, 0.7, 0.7), description="P-, R- and O-net score thresholds."
    )
    factor: float = Field(default=0.709, gt=0.1, lt=1.0, description="Image pyramid scale step.")
    min_probability: float = Field(default=0.9, ge=0.0, le=1.0, description="Faces below are dropped.")
    subject: Literal["largest", "center", "center_weighted"] = Field(
        default="center_weighted",
        description="Which face is the subject of a dataset photo: the largest, the most central, or size "
        "weighted by closeness to the centre (LFW's convention: the subject is centred).",
    )
    ladder: tuple[DetectorRung, ...] = Field(
        default=(),
        description="Retries, in order, for a photo where no face passes: each rung runs only on the photos all "
        "before it missed, and the first rung that finds a face gives that photo's faces.",
    )

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(0.0 < t < 1.0 for t in value):
            raise ValueError("each detection threshold must be in (0, 1)")
        return value

    @model_validator(mode="after")
    def _net_matches_kind(self) -> DetectorConfig:
        if self.kind == "faceops-net" and self.net is None:
            raise ValueError("detector kind 'faceops-net' needs 'net' (at least its weights_sha256)")
        if self.kind == "mtcnn" and self.net is not None:
            raise ValueError("'net' settings are for detector kind 'faceops-net', not 'mtcnn'")
        if self.kind == "faceops-net" and self.ladder:
            raise ValueError("the retry ladder is MTCNN's: detector kind 'faceops-net' takes none")
        return self


class AlignConfig(AddedFieldsConfig):
    """How a detected face becomes a fixed-size crop.

    The defaults were measured on LFW pairs fold 3 with the CASIA-WebFace weights
    (``benchmarks/preprocess_sweep.py``, results in ``benchmarks/results/``): a box crop with margin 0.3 scored
    best (98.8%); the similarity warp scored 97.5-98.0% at every margin, because these weights were trained on
    unaligned MTCNN crops. A model trained on aligned crops should set ``method: similarity``.
    """

    omit_at_default: ClassVar[tuple[str, ...]] = ("template", "illumination")

    method: Literal["similarity", "crop"] = Field(
        default="crop",
        description="'similarity': 5-point similarity warp to a canonical template; 'crop': facenet-pytorch's "
        "box crop with a margin (no rotation).",
    )
    template: Literal["mtcnn", "arcface"] = Field(
        default="mtcnn",
        description="Landmark template of the similarity warp: 'mtcnn', FaceOps' MTCNN-box layout framed by "
        "'margin'; 'arcface', the fixed 112x112 reference points of ArcFace / MobileFaceNet models (scaled to "
        "'image_size'; 'margin' is not used).",
    )

    illumination: Literal["none", "clahe", "gamma", "histeq"] = Field(
        default="none",
        description="Illumination normalisation of the crop (faceops.face.illumination): 'clahe' on luminance, "
        "'gamma' to a target mean, 'histeq'; chosen by measurement on the drifted slice when a retraining "
        "targets a lighting drift (benchmarks/drift_repair.py).",
    )
    image_size: int = Field(default=160, ge=32, le=512, description="Side of the square crop.")
    margin: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="Context around the face as a share of the face box side (both methods).",
    )


class EmbedderConfig(AddedFieldsConfig):
    """How crops become embeddings.

    Flip averaging is off by default: on LFW fold 3 it changed accuracy by one or two pairs of 600 either way
    while doubling the embedding cost.
    """

    omit_at_default: ClassVar[tuple[str, ...]] = ("backend", "precision")

    normalization: Literal["fixed", "imagenet"] = Field(
        default="fixed",
        description="'fixed': (x - 127.5) / 128, facenet-pytorch's fixed_image_standardization; 'imagenet': "
        "x / 255 minus the ImageNet mean, over its std (MobileFaceNet).",
    )
    backend: Literal["torch", "onnxruntime"] = Field(
        default="torch",
        description="What runs the network. Part of the fingerprint, so a gallery made with one backend (or "
        "precision) is never searched with embeddings of another.",
    )
    precision: Literal["fp32", "int8", "bf16"] = Field(default="fp32", description="The network's arithmetic.")

    flip_average: bool = Field(default=False, description="Average the embeddings of the crop and its mirror.")
    batch_size: int = Field(default=32, ge=1, le=1024)


class PreprocessConfig(StrictConfig):
    """Everything between an image file and the embedding network's input; stored with each model."""

    version: int = Field(default=1, description="Bumped when the meaning of a field changes.")
    detector: DetectorConfig = DetectorConfig()
    align: AlignConfig = AlignConfig()
    embedder: EmbedderConfig = EmbedderConfig()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists)."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """A short stable hash of the whole config: stamps galleries and models (embeddings of one config are
        never compared with another's)."""
        return _digest(self.to_dict())

    def crop_fingerprint(self) -> str:
        """A short stable hash of what makes the crops (detection and alignment): the key of the crop cache, so
        variants that differ only in how crops become embeddings (backend, precision, flip) share their crops."""
        data = self.to_dict()
        return _digest({"version": data["version"], "detector": data["detector"], "align": data["align"]})

    @classmethod
    def from_file(cls, path: str | Path) -> PreprocessConfig:
        """Read a config from YAML or JSON; unknown keys and bad values raise :class:`ConfigError`."""
        return load_yaml_config(path, cls)


def _digest(data: dict[str, Any]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def load_yaml_config(path: str | Path, model: type[_M]) -> _M:
    """Parse a YAML file into ``model``, turning every problem into a :class:`ConfigError` naming the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from exc


# Cosine threshold of the default preprocessing and weights at FAR = 1e-3, calibrated on LFW pairs folds 3-8 (3,600 pairs, disjoint
# from the test folds 1-2) by benchmarks/calibrate_threshold.py -> benchmarks/results/threshold.json. On folds 1-2
# it gives FAR 0 and FRR 13%. A trained model carries its own calibrated threshold in its bundle.
DEFAULT_THRESHOLD = 0.556
DEFAULT_TARGET_FAR = 1e-3  # the FAR DEFAULT_THRESHOLD was calibrated for
