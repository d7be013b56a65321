"""Typed run config of training, evaluation and the gate (``configs/train.yaml``); unknown keys refused."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from faceops.face.config import PreprocessConfig, StrictConfig, load_yaml_config

__all__ = [
    "AugmentConfig",
    "EvalConfig",
    "GateConfig",
    "HeadConfig",
    "LfwPairsConfig",
    "StageConfig",
    "TrainConfig",
    "load_train_config",
]

# InceptionResnetV1's modules in forward order; training may unfreeze from one of the last ones.
CUT_POINTS = ("repeat_3", "block8", "last_linear")


class HeadConfig(StrictConfig):
    """The classification head over the training identities (dropped after training)."""

    type: Literal["softmax", "arcface"] = Field(
        default="softmax",
        description="'softmax': a linear layer; 'arcface': additive angular margin on cosines.",
    )
    scale: float = Field(default=30.0, gt=0, description="arcface: logit scale s.")
    margin: float = Field(default=0.3, ge=0, lt=1.0, description="arcface: angular margin m (radians).")


class AugmentConfig(StrictConfig):
    """Pixel augmentation of training crops; each copy costs one more trunk pass per training image, once."""

    copies: int = Field(
        default=1,
        ge=0,
        le=8,
        description="Augmented copies per training image (besides the clean crop and its mirror).",
    )
    flip: bool = Field(default=True, description="Random horizontal flips in the augmented copies.")
    color_jitter: float = Field(
        default=0.3,
        ge=0,
        le=1,
        description="Brightness/contrast/saturation factors are drawn from [1 - j, 1 + j].",
    )
    rotation_deg: float = Field(
        default=10.0, ge=0, le=45, description="Rotations drawn from [-r, r] degrees."
    )
    blur_prob: float = Field(default=0.3, ge=0, le=1, description="Chance of a Gaussian blur.")
    blur_sigma: float = Field(default=1.2, gt=0, le=5, description="Largest blur sigma in pixels.")


class StageConfig(StrictConfig):
    """One training stage."""

    epochs: int = Field(ge=0, le=1000)
    lr: float = Field(gt=0, le=1.0)


class EvalConfig(StrictConfig):
    """Evaluation and threshold calibration."""

    target_far: float = Field(
        default=1e-3, gt=0, lt=1, description="FAR the stored threshold is calibrated for."
    )
    far_targets: tuple[float, ...] = Field(default=(1e-2, 1e-3), description="FARs at which TAR is reported.")
    calibration_fraction: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Share of the held-out (test) identities used to calibrate the threshold; the others "
        "measure "
        "FAR/FRR at it, so the reported FAR is not the calibration's own.",
    )
    max_confusion_classes: int = Field(
        default=40,
        ge=2,
        description="Confusion-matrix plot: the most confused "
        "identities shown (the JSON report keeps the whole matrix).",
    )


class LfwPairsConfig(StrictConfig):
    """LFW's pairs protocol, scored on the available folds."""

    pairs: Path = Field(description="pairs.txt")
    root: Path = Field(description="Folder with one sub-folder per person.")
    folds: list[int] | None = Field(default=None, description="Folds to use (1-based); default: all.")


class GateConfig(StrictConfig):
    """Promotion gate: the challenger must not be worse than the champion beyond these tolerances."""

    max_accuracy_drop: float = Field(
        default=0.0, ge=0, le=1, description="Closed-set accuracy may drop by at most this much."
    )
    max_far_increase: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="FAR at each model's own threshold may rise by at most this much.",
    )
    max_tar_drop: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="TAR at the target FAR may drop by at most this much (a challenger "
        "that does not help is refused).",
    )
    min_tar_at_far: float = Field(
        default=0.0, ge=0, le=1, description="Absolute floor on TAR at the target FAR."
    )
    max_lfw_accuracy_drop: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="When the run config has lfw_pairs: the LFW pairs accuracy (mean over folds, on the pairs "
        "of people outside the data version's training identities) may drop by at most this much.",
    )
    allow_first: bool = Field(
        default=True, description="With no champion yet, promote a challenger that passes the absolute floor."
    )


class TrainConfig(StrictConfig):
    """Everything a training run depends on; logged with the run."""

    seed: int = 0
    data_root: Path = Path("data")
    output_dir: Path = Field(default=Path("outputs/train"), description="Bundle, checkpoints, plots, report.")
    preprocess: PreprocessConfig = PreprocessConfig()
    cut: Literal["repeat_3", "block8", "last_linear"] = Field(
        default="block8",
        description="First unfrozen module: the trunk before it is frozen and its activations "
        "are cached once per (crop, view).",
    )
    head: HeadConfig = HeadConfig()
    augment: AugmentConfig = AugmentConfig()
    head_stage: StageConfig = StageConfig(epochs=15, lr=1e-2)
    finetune_stage: StageConfig = StageConfig(epochs=8, lr=1e-4)
    batch_size: int = Field(default=64, ge=2, le=4096)
    weight_decay: float = Field(default=5e-4, ge=0, le=1)
    patience: int = Field(default=3, ge=1, description="Early stopping: epochs without a better val loss.")
    min_delta: float = Field(
        default=0.01,
        ge=0,
        lt=1,
        description="Early stopping: a val loss counts as better when it is below the "
        "best by more than this share of it (relative, so tiny losses of an easy task still count).",
    )
    schedule: Literal["cosine", "constant"] = "cosine"
    min_images_per_identity: int = Field(
        default=2, ge=1, description="Training identities with fewer train images are left out of the head."
    )
    device: str = Field(default="auto", description="'auto' uses a GPU when there is one.")
    evaluation: EvalConfig = EvalConfig()
    lfw_pairs: LfwPairsConfig | None = None
    gate: GateConfig = GateConfig()
    mlflow: bool = Field(
        default=True, description="Log the run to MLflow and register the model as challenger."
    )

    @model_validator(mode="after")
    def _some_training(self) -> TrainConfig:
        if self.head_stage.epochs + self.finetune_stage.epochs == 0:
            raise ValueError("head_stage.epochs + finetune_stage.epochs must be > 0")
        return self


def load_train_config(path: str | Path | None) -> TrainConfig:
    """The config from YAML (``ConfigError`` on unknown keys or bad values), or the defaults."""
    return load_yaml_config(path, TrainConfig) if path else TrainConfig()
