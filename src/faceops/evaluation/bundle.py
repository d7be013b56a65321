"""The model bundle: everything needed to use a face model, saved and loaded as one folder.

A bundle is what training produces, what the MLflow registry stores (as the model's artifacts) and what serving
loads, so serving needs nothing else and guesses no defaults::

    <dir>/
      bundle.json      format, model id, preprocessing config, threshold, target FAR, metadata
      weights.pt       InceptionResnetV1 state dict (embedder only; classification heads are dropped)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from faceops.errors import ConfigError
from faceops.face.config import DEFAULT_TARGET_FAR, DEFAULT_THRESHOLD, PreprocessConfig
from faceops.face.embedding import Embedder, load_backbone
from faceops.face.recognizer import FaceRecognizer

__all__ = ["BUNDLE_FORMAT", "ModelBundle"]

BUNDLE_FORMAT = 1


@dataclass
class ModelBundle:
    """A face model with its preprocessing and calibrated decision threshold.

    Attributes:
        backbone: the embedding network (eval mode).
        preprocess: the preprocessing it was trained and evaluated with.
        threshold: cosine threshold for "same person" / known identity.
        target_far: the FAR the threshold was calibrated for, if it was calibrated.
        model_id: a stable id of the weights (used to stamp galleries).
        metadata: free-form facts (data version, run id, metrics).
    """

    backbone: torch.nn.Module
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    threshold: float = DEFAULT_THRESHOLD
    target_far: float | None = None
    model_id: str = "custom"
    metadata: dict[str, Any] = field(default_factory=dict)

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

    def recognizer(self, device: str | None = None) -> FaceRecognizer:
        """A face recognizer that uses this model and its preprocessing."""
        embedder = Embedder(self.preprocess.embedder, device=device, model=self.backbone, model_id=self.model_id)
        return FaceRecognizer(self.preprocess, embedder=embedder)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = directory / "weights.pt"
        state = {k: v.detach().cpu() for k, v in self.backbone.state_dict().items() if not k.startswith("logits.")}
        torch.save(state, weights)
        if self.model_id == "custom":
            self.model_id = "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        meta = {
            "format": BUNDLE_FORMAT,
            "model_id": self.model_id,
            "preprocess": self.preprocess.to_dict(),
            "threshold": self.threshold,
            "target_far": self.target_far,
            "metadata": self.metadata,
        }
        (directory / "bundle.json").write_text(json.dumps(meta, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ModelBundle:
        directory = Path(directory)
        meta_path = directory / "bundle.json"
        if not meta_path.is_file():
            raise ConfigError(f"{directory} is not a FaceOps model bundle (no bundle.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != BUNDLE_FORMAT:
            raise ConfigError(f"{meta_path}: unsupported bundle format {meta.get('format')!r}")
        backbone, _ = load_backbone(directory / "weights.pt")
        return cls(
            backbone=backbone,
            preprocess=PreprocessConfig.model_validate(meta["preprocess"]),
            threshold=float(meta["threshold"]),
            target_far=meta.get("target_far"),
            model_id=meta["model_id"],
            metadata=meta.get("metadata", {}),
        )
