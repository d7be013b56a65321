"""Typed run config of training, evaluation and the gate (``configs/train.yaml``); unknown keys refused."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from faceops.face.config import AddedFieldsConfig, PreprocessConfig, StrictConfig, load_yaml_config

__all__ = [
    "AugmentConfig",
    "DriftTarget",
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


class AugmentConfig(AddedFieldsConfig):
    """Pixel augmentation of training crops; each copy costs one more trunk pass per training image, once."""

    # added for drift-matched retraining: the augmented views (keyed by the dump) of older configs keep their caches
    omit_at_default: ClassVar[tuple[str, ...]] = ("blur_min_sigma", "dark_prob", "dark_range")

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
    blur_min_sigma: float = Field(
        default=0.1, gt=0, le=5, description="Smallest blur sigma in pixels (a drift-matched blur draws from a band)."
    )
    dark_prob: float = Field(
        default=0.0, ge=0, le=1, description="Chance of darkening a copy (a lighting drift: dim rooms)."
    )
    dark_range: tuple[float, float] = Field(
        default=(0.3, 0.7), description="Brightness factors of the darkening are drawn from this range."
    )

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        if self.blur_min_sigma > self.blur_sigma:
            raise ValueError("blur_min_sigma must be <= blur_sigma")
        low, high = self.dark_range
        if not 0 < low <= high <= 1:
            raise ValueError("dark_range must satisfy 0 < low <= high <= 1")
        return self


class DriftTarget(StrictConfig):
    """The drift a retraining was started for, as the monitor measured it (window against reference), which
    :mod:`faceops.training.drift_plan` turns into the run's augmentation, preprocessing and gate conditions."""

    brightness_ratio: float | None = Field(
        default=None, gt=0, description="Mean crop brightness of the drifted window over the reference's."
    )
    blur_ratio: float | None = Field(
        default=None,
        gt=0,
        description="Mean crop sharpness (variance of the Laplacian) of the window over the reference's; below 1 is "
        "blurrier.",
    )
    drifted: tuple[str, ...] = Field(default=(), description="Every feature the monitor found drifted.")
    illumination_candidates: tuple[Literal["none", "clahe", "gamma", "histeq"], ...] = Field(
        default=("none", "clahe", "gamma"),
        description="Illumination steps measured on the drifted slice; the best is kept only if it helps there.",
    )
    max_clean_tar_drop: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="An illumination step may cost clean TAR at the target FAR at most this much (default: the "
        "gate's max_tar_drop).",
    )
    measure: bool = Field(
        default=True, description="Measure the illumination candidates (off: keep the run's preprocessing)."
    )


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


class RobustnessGateConfig(StrictConfig):
    """Gate criterion: the challenger may not be worse than the champion under any of these image conditions
    (:mod:`faceops.evaluation.conditions`, applied to the probe side of verification pairs)."""

    conditions: list[str] = Field(
        default_factory=lambda: [
            "underexposure", "overexposure", "low_contrast", "gaussian_blur", "motion_blur", "noise", "jpeg",
            "downscale", "rotation", "occlusion_eyes", "occlusion_lower", "greyscale",
        ],
        min_length=1,
        description="Condition names to judge on (default: all).",
    )
    severities: dict[str, float] = Field(
        default_factory=dict, description="Per-condition severity in [0, 1]; the condition's default otherwise."
    )
    max_drop: float = Field(
        default=0.02, ge=0, le=1, description="TAR at the target FAR may drop by at most this much on any condition."
    )
    max_frr_increase: float = Field(
        default=0.02, ge=0, le=1, description="FRR at each model's own threshold may rise by at most this much."
    )
    pairs: Path | None = Field(
        default=None,
        description="LFW pairs.txt (images beside it); default: the run config's lfw_pairs, else the data "
        "version's held-out identities.",
    )
    folds: list[int] | None = Field(default=None, description="LFW folds (1-based); default: all.")
    seed: int = 0
    min_pairs: int = Field(default=20, ge=1, description="Fewer genuine or impostor pairs: cannot be judged.")

    @model_validator(mode="after")
    def _known(self) -> RobustnessGateConfig:
        from faceops.evaluation.conditions import CONDITIONS

        unknown = sorted(({*self.conditions} | {*self.severities}) - set(CONDITIONS))
        if unknown:
            raise ValueError(f"unknown conditions {unknown}; known: {', '.join(CONDITIONS)}")
        if any(not 0 <= v <= 1 for v in self.severities.values()):
            raise ValueError("severities must be in [0, 1]")
        return self


class GroupGateConfig(StrictConfig):
    """Gate criterion: per-group verification (:mod:`faceops.evaluation.groups`) may not get worse."""

    groupings: list[str] = Field(
        default_factory=lambda: ["skin_tone", "pose", "quality"],
        min_length=1,
        description="skin_tone, pose, expression, brightness, quality, or attr:<column> of the attribute CSV.",
    )
    max_gap_increase: float = Field(
        default=0.02, ge=0, le=1, description="The largest FRR gap between groups may rise by at most this much."
    )
    max_frr_increase: float = Field(
        default=0.05, ge=0, le=1, description="Any judged group's FRR may rise by at most this much."
    )
    attributes: Path | None = Field(default=None, description="Attribute CSV (image,<attr>...) for attr: groups.")


class GateConfig(AddedFieldsConfig):
    """Promotion gate: the challenger must not be worse than the champion beyond these tolerances."""

    omit_at_default: ClassVar[tuple[str, ...]] = ("robustness", "groups")  # off when unset

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
    robustness: RobustnessGateConfig | None = Field(
        default=None, description="Also judge on image conditions (off when unset)."
    )
    groups: GroupGateConfig | None = Field(default=None, description="Also judge per group (off when unset).")


class TrainConfig(AddedFieldsConfig):
    """Everything a training run depends on; logged with the run."""

    omit_at_default: ClassVar[tuple[str, ...]] = ("drift",)  # only runs started for a drift carry one

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
    drift: DriftTarget | None = Field(
        default=None,
        description="The drift this run was started for (set by the monitor's trigger): its augmentation and "
        "preprocessing are then planned by faceops.training.drift_plan.",
    )
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
