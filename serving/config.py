"""Service settings: where the model, gallery and request log are, and the limits the service enforces.

Every field can be set by an environment variable ``FACEOPS_SERVE_<FIELD>`` (lists as JSON, e.g.
``FACEOPS_SERVE_CORS_ORIGINS='["https://app.example"]'``) or passed to :func:`faceops.serving.app.create_app`.
The model's own settings (preprocessing, threshold) are *not* here: they come with the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServingSettings"]


class ServingSettings(BaseSettings):
    """Settings of one service instance."""

    model_config = SettingsConfigDict(env_prefix="FACEOPS_SERVE_", extra="forbid")

    # -- the model -------------------------------------------------------------------------------------------
    bundle_dir: Path | None = Field(
        default=None, description="Serve this local model bundle folder (dev, tests) instead of MLflow."
    )
    mlflow_uri: str | None = Field(
        default=None, description="MLflow tracking URI of the registry; default: FACEOPS_MLFLOW_TRACKING_URI."
    )
    model_alias: str = Field(default="champion", description="The alias the service follows.")
    poll_seconds: float = Field(
        default=30.0, gt=0, description="How often the alias is checked for a new model."
    )
    device: str | None = Field(default=None, description="Torch device; default: the core settings' device.")

    # -- state -----------------------------------------------------------------------------------------------
    state_dir: Path = Field(default=Path("outputs/serving"), description="Gallery and request log live here.")
    keep_enrollment_images: bool = Field(
        default=True,
        description="Keep enrolled photos (consented, in state_dir/enrolled) so the gallery can be "
        "re-embedded when a new model with other weights becomes champion.",
    )

    database_url: str | None = Field(
        default=None,
        description="postgresql://user:password@host:port/name: keep the gallery (identities, enrolment photos, "
        "embeddings per model) and the request log in this PostgreSQL database, shared by every replica, instead "
        "of the files in state_dir. In Kubernetes it comes from the Secret faceops-database.",
        repr=False,
    )
    sync_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often the background task follows the other replicas' changes and retries a database "
        "that was down (a search also checks for changes first).",
    )
    rebuild_batch: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="Photos embedded per step when a new model's gallery is built in the background (each step "
        "is saved: an interrupted build resumes).",
    )

    # -- request log -----------------------------------------------------------------------------------------
    log_sample_rate: float = Field(default=1.0, ge=0.0, le=1.0, description="Share of requests logged.")
    log_retention_days: float = Field(default=30.0, gt=0, description="Older log rows are deleted.")
    log_store_images: bool = Field(default=False, description="Also keep the raw images of logged requests.")
    log_embeddings: bool = Field(
        default=False,
        description="Also keep each face's embedding (float16) for embedding-drift monitoring; off by "
        "default because an embedding is a biometric template.",
    )

    # -- security and limits ---------------------------------------------------------------------------------
    api_key_hashes: list[str] = Field(
        default_factory=list,
        description="SHA-256 hex digests of the accepted API keys ('name:digest' allowed).",
    )
    api_keys_file: Path | None = Field(default=None, description="A file of digests, one per line.")
    allow_anonymous: bool = Field(
        default=False, description="Serve without API keys (local development only)."
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Larger request bodies get 413."
    )
    max_image_pixels: int = Field(default=25_000_000, ge=64 * 64, description="Larger images get 413.")
    max_images_per_request: int = Field(default=20, ge=1, description="Enrollment uploads per request.")
    rate_limit_per_minute: int = Field(
        default=600, ge=0, description="Requests (and WebSocket frames) per key per minute; 0: no limit."
    )
    rate_limit_burst: int = Field(default=60, ge=1, description="Requests a key may make at once.")
    auth_failures_per_minute: int = Field(
        default=10,
        ge=0,
        description="Failed API-key attempts a client address may make per minute once its burst is spent; "
        "past that it gets 429 for any key (0: no limit).",
    )
    auth_failure_burst: int = Field(default=20, ge=1, description="Failed API-key attempts allowed at once.")
    cors_origins: list[str] = Field(
        default_factory=list, description="CORS is off unless origins are listed."
    )
    inference_threads: int = Field(default=2, ge=1, description="Concurrent inference jobs (thread pool).")
    torch_threads: int | None = Field(
        default=1,
        ge=1,
        description="torch intra-op threads per job; 1 by default because requests already run in parallel "
        "(inference_threads) and intra-op threads contend with them (None: torch's default).",
    )
    detector_backend: Literal["torch", "onnxruntime"] = Field(
        default="onnxruntime",
        description="What runs MTCNN's P/R/O-nets: ONNX Runtime (the same weights exported at start-up; the same "
        "faces to float rounding, several times faster per net on CPUs, see benchmarks/results/serving.json) or "
        "PyTorch as facenet-pytorch ships them.",
    )
    top_k: int = Field(default=3, ge=1, le=20, description="Candidates returned per recognised face.")
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of a second listener that serves only /metrics, without an API key, for Prometheus "
        "(expose it inside the cluster only; 0: off, /metrics on the API port needs a key).",
    )
    metrics_host: str = Field(default="0.0.0.0", description="Address the metrics listener binds to.")

    @model_validator(mode="after")
    def _one_model_source(self) -> ServingSettings:
        if self.bundle_dir is not None and self.mlflow_uri is not None:
            raise ValueError("set only one of bundle_dir and mlflow_uri")
        return self

    @model_validator(mode="after")
    def _database_is_postgres(self) -> ServingSettings:
        if self.database_url is not None and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ValueError("database_url must be a postgresql:// URL (or unset for the files in state_dir)")
        return self

    @property
    def gallery_path(self) -> Path:
        return self.state_dir / "gallery.npz"

    @property
    def enrolled_dir(self) -> Path:
        return self.state_dir / "enrolled"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "requests.sqlite"
