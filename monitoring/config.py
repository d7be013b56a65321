"""The monitor's run config (``configs/monitor.yaml``): where the logs are, the policy, the alert sinks, the
trigger.

Unknown keys and bad values are refused (:class:`~faceops.errors.ConfigError` through
:func:`faceops.face.config.load_yaml_config`). Durations are strings like ``'10m'`` or ``'24h'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from faceops.errors import ConfigError
from faceops.face.config import StrictConfig, load_yaml_config
from faceops.telemetry.stats import parse_duration

__all__ = [
    "DriftConfig",
    "FileSinkConfig",
    "LogSinkConfig",
    "MonitorConfig",
    "PolicyConfig",
    "SinkConfig",
    "TriggerConfig",
    "WebhookSinkConfig",
    "load_monitor_config",
]


def _duration(value: object) -> float:
    try:
        return parse_duration(value)  # type: ignore[arg-type]
    except ConfigError as exc:  # pydantic reports ValueErrors with the field's location
        raise ValueError(str(exc)) from exc


class DriftConfig(StrictConfig):
    """How drift is measured (Evidently)."""

    method: str | None = Field(
        default=None,
        description="Evidently stat test for every feature; None: its default "
        "(K-S for numbers, Z-test / chi-square for the unknown rate).",
    )
    threshold: float | None = Field(
        default=None, gt=0, description="The stat test's threshold (p-value for K-S)."
    )
    embedding_method: Literal["mmd", "distance", "model", "ratio"] = Field(
        default="model",
        description="Evidently's embedding drift method, bootstrapped against the reference; "
        "'model': ROC AUC of a classifier telling window from reference.",
    )
    embedding_pca: int | None = Field(
        default=20, ge=2, description="PCA components before the embedding test."
    )
    embedding_sample: int = Field(default=200, ge=10, description="Most faces re-embedded per window.")
    min_embeddings: int = Field(default=20, ge=5, description="Fewer embeddings in a window: not tested.")


class PolicyConfig(StrictConfig):
    """When a window raises an alarm, and when an alarm starts a retraining."""

    min_faces: int = Field(default=50, ge=1, description="Fewer faces in a window: drift is not judged.")
    min_feedback: int = Field(
        default=30, ge=1, description="Fewer labelled faces: accuracy/FAR/FRR not judged."
    )
    max_drift_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Alarm when at least this share of the tested features (embeddings included) drifted.",
    )
    max_accuracy_drop: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Alarm when accuracy falls more than this below the reference's.",
    )
    max_far: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Alarm when FAR exceeds this. Default: the reference's own FAR plus max_far_increase, and "
        "never below the champion's target FAR (a 1:N search accepts more impostors than the pairwise target: "
        "an impostor is compared with every enrolled photo).",
    )
    max_far_increase: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Without max_far: alarm when FAR rises more than this above the reference's FAR.",
    )
    use_confidence: bool = Field(
        default=True,
        description="Judge accuracy by the upper end and FAR by the lower "
        "end of their 95 % intervals, so small windows do not raise false alarms.",
    )
    retrain_on: tuple[Literal["drift", "accuracy", "far"], ...] = Field(
        default=("drift", "accuracy", "far"),
        description="Alarms that start a retraining (others only alert).",
    )
    cooldown: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="After a retraining starts, no other starts "
        "for this long (a run of bad windows starts one retraining).",
    )
    retry_after: float = Field(default=1800.0, gt=0, description="After a failed start, wait this long.")

    _durations = field_validator("cooldown", "retry_after", mode="before")(_duration)


class LogSinkConfig(StrictConfig):
    type: Literal["log"] = "log"
    level: Literal["INFO", "WARNING", "ERROR"] = "WARNING"


class WebhookSinkConfig(StrictConfig):
    type: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://", description="Receives the alert as a JSON POST.")
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=2, ge=0, le=5)
    headers: dict[str, str] = Field(default_factory=dict, description="E.g. an Authorization header.")


class FileSinkConfig(StrictConfig):
    type: Literal["file"] = "file"
    path: Path = Field(description="Alerts are appended here, one JSON object per line.")


SinkConfig = Annotated[LogSinkConfig | WebhookSinkConfig | FileSinkConfig, Field(discriminator="type")]


def _log_sink_only() -> list[SinkConfig]:
    return [LogSinkConfig()]


class TriggerConfig(StrictConfig):
    """How a retraining starts."""

    enabled: bool = Field(default=True, description="False: alarms only alert.")
    backend: Literal["local", "kfp"] = Field(
        default="local", description="kfp.local here; a KFP cluster: 'kfp'."
    )
    host: str | None = Field(
        default=None,
        description="KFP API URL (backend 'kfp'), e.g. http://ml-pipeline.kubeflow:8888; default: "
        "KF_PIPELINES_ENDPOINT.",
    )
    namespace: str | None = Field(
        default=None,
        description="The Kubeflow profile namespace of a multi-user install (the runs, experiment and "
        "pipeline live there); None: KF_PIPELINES_NAMESPACE, else single-user; '': single-user.",
    )
    experiment: str | None = Field(
        default=None,
        description="Kubeflow experiment of the retraining runs; default: KF_PIPELINES_DEFAULT_EXPERIMENT_NAME, "
        "else 'faceops'.",
    )
    auth: Literal["auto", "none"] = Field(
        default="auto",
        description="'auto': the bearer token in FACEOPS_KFP_TOKEN, else the token file (token_path, "
        "KF_PIPELINES_SA_TOKEN_PATH, or a pod's projected token at /var/run/secrets/kubeflow/pipelines/token); "
        "a namespace needs one. 'none': send no credentials.",
    )
    token_path: Path | None = Field(
        default=None,
        description="A file holding the bearer token, re-read before each call (a projected "
        "service-account token with audience pipelines.kubeflow.org).",
    )
    verify_ssl: bool | None = Field(default=None, description="Verify the API's TLS certificate (None: yes).")
    ssl_ca_cert: Path | None = Field(default=None, description="CA bundle of the API's TLS certificate.")
    service_account: str | None = Field(
        default=None, description="Kubernetes service account the run's pods use (None: the namespace's default)."
    )
    cache_pvc: str | None = Field(
        default=None, description="A PersistentVolumeClaim the steps mount as their scratch cache (None: none)."
    )
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="Pipeline arguments (run_config, "
        "tracking_uri, gate tolerances, ...) handed to the retraining pipeline.",
    )
    repo_root: Path = Field(default=Path("."), description="The git + DVC repository of the data.")
    add_feedback_images: bool = Field(
        default=False,
        description="First add the images users confirmed through "
        "feedback (needs log_store_images) to the data as a new DVC version.",
    )
    target_drift: bool = Field(
        default=True,
        description="Pass what drifted (direction and size) into the run config ('drift'), so the retraining "
        "matches its augmentation and preprocessing to it (faceops.training.drift_plan).",
    )


class MonitorConfig(StrictConfig):
    """Everything one monitor run depends on."""

    request_log: Path = Field(
        default=Path("outputs/serving/requests.sqlite"), description="The service's log."
    )
    window: float = Field(default=3600.0, gt=0, description="How far back a run looks.")
    tracking_uri: str | None = Field(
        default=None, description="MLflow; default: FACEOPS_MLFLOW_TRACKING_URI."
    )
    reference_dir: Path | None = Field(
        default=None,
        description="A saved reference to use instead of the "
        "champion's MLflow artifact (no registry needed).",
    )
    bundle_dir: Path | None = Field(
        default=None,
        description="With reference_dir: the served model bundle, to "
        "embed the log's stored images for embedding drift.",
    )
    data_root: Path | None = Field(
        default=None,
        description="Data version to compute the champion's reference from when its run has none.",
    )
    only_champion_rows: bool = Field(default=True, description="Judge only requests served by the champion.")
    reports_dir: Path = Field(
        default=Path("outputs/monitoring"), description="One folder of reports per run."
    )
    state_backend: Literal["local", "mlflow"] = Field(
        default="local",
        description="Where decisions and retraining starts (cooldown, the runs started) are kept: 'local', the "
        "SQLite file state_path (one machine); 'mlflow', runs of state_experiment on the tracking server "
        "(a cluster: pods share nothing else).",
    )
    state_path: Path = Field(
        default=Path("outputs/monitoring/state.sqlite"), description="Decisions and cooldown (state_backend 'local')."
    )
    state_experiment: str = Field(
        default="faceops-monitoring",
        min_length=1,
        description="MLflow experiment of the decisions and retraining starts (state_backend 'mlflow').",
    )
    embedding_cache: Path | None = Field(
        default=None,
        description="SQLite cache of the stored images' embeddings (a cache: losing it costs time only); "
        "default: state_path with the local state, <reports_dir>/.cache/embeddings.sqlite with MLflow.",
    )
    embedding_cache_max_age: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="Cached embeddings (of people's faces) older than this are dropped at each run, as are those "
        "whose request left the request log (erased identity, log retention). Seconds or a duration ('7d').",
    )
    log_to_mlflow: bool = True
    drift: DriftConfig = DriftConfig()
    policy: PolicyConfig = PolicyConfig()
    alerts: list[SinkConfig] = Field(default_factory=_log_sink_only)
    trigger: TriggerConfig = TriggerConfig()

    _durations = field_validator("window", "embedding_cache_max_age", mode="before")(_duration)


def load_monitor_config(path: str | Path | None) -> MonitorConfig:
    """The config from YAML (``ConfigError`` on unknown keys or bad values), or the defaults."""
    return load_yaml_config(path, MonitorConfig) if path else MonitorConfig()
