"""Typed run configs: the preprocessing that travels with a model, loaded from YAML with unknown keys refused.

One :class:`PreprocessConfig` drives detection, subject choice, alignment and normalisation everywhere (CLI,
training, evaluation, serving). It is saved next to every model and read back by whoever uses that model, so the
pixels a model sees in production are the pixels it was evaluated on.

:class:`StrictConfig` (unknown keys refused, instances frozen) and :func:`load_yaml_config` are the base and the
loader of every typed config of FaceOps: training's, the monitor's, the data import's, splits and validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from faceops.errors import ConfigError

__all__ = [
    "DEFAULT_TARGET_FAR",
    "DEFAULT_THRESHOLD",
    "AlignConfig",
    "DetectorConfig",
    "EmbedderConfig",
    "PreprocessConfig",
    "StrictConfig",
    "load_yaml_config",
]

_M = TypeVar("_M", bound=BaseModel)


class StrictConfig(BaseModel):
    """Base of every typed config: unknown keys are refused (a typo never passes silently) and instances are
    frozen (a config logged with a run is the config that ran)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorConfig(StrictConfig):
    """MTCNN settings (facenet-pytorch)."""

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

    @field_validator("thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(0.0 < t < 1.0 for t in value):
            raise ValueError("each detection threshold must be in (0, 1)")
        return value


class AlignConfig(StrictConfig):
    """How a detected face becomes a fixed-size crop.

    The defaults were measured on LFW pairs fold 3 with the CASIA-WebFace weights
    (``benchmarks/preprocess_sweep.py``, results in ``benchmarks/results/``): a box crop with margin 0.3 scored
    best (98.8%); the similarity warp scored 97.5-98.0% at every margin, because these weights were trained on
    unaligned MTCNN crops. A model trained on aligned crops should set ``method: similarity``.
    """

    method: Literal["similarity", "crop"] = Field(
        default="crop",
        description="'similarity': 5-point similarity warp to a canonical template; 'crop': facenet-pytorch's "
        "box crop with a margin (no rotation).",
    )
    image_size: int = Field(default=160, ge=32, le=512, description="Side of the square crop.")
    margin: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="Context around the face as a share of the face box side (both methods).",
    )


class EmbedderConfig(StrictConfig):
    """How crops become embeddings.

    Flip averaging is off by default: on LFW fold 3 it changed accuracy by one or two pairs of 600 either way
    while doubling the embedding cost.
    """

    normalization: Literal["fixed"] = Field(
        default="fixed", description="'fixed': (x - 127.5) / 128, facenet-pytorch's fixed_image_standardization."
    )
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
        """A short stable hash of the config, for cache keys."""
        import hashlib
        import json

        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_file(cls, path: str | Path) -> PreprocessConfig:
        """Read a config from YAML or JSON; unknown keys and bad values raise :class:`ConfigError`."""
        return load_yaml_config(path, cls)


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
