"""Environment settings: where things are (weights, stores, limits), read once from ``FACEOPS_*`` variables.

Experiment settings (detection thresholds, crop margin, training schedule) are *not* here: they live in typed run
configs (:mod:`faceops.preprocessing` and friends) that are logged with every model.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """FaceOps environment settings.

    Every field can be set by an environment variable named ``FACEOPS_<FIELD>`` (for example
    ``FACEOPS_WEIGHTS=/models/casia.pt``) or in a ``.env`` file in the working directory.
    """

    model_config = SettingsConfigDict(env_prefix="FACEOPS_", env_file=".env", extra="ignore")

    weights: str | None = Field(
        default=None,
        description="An InceptionResnetV1 state dict: a file path, or an object URI (s3://bucket/key, fetched "
        "once into `cache_dir`). When unset, `pretrained` is downloaded by facenet-pytorch (needs network).",
    )
    weights_sha256: str | None = Field(
        default=None, description="Expected sha256 of the weights file; a download that differs is refused."
    )
    pretrained: Literal["vggface2", "casia-webface"] = Field(
        default="vggface2", description="facenet-pytorch weights to download when `weights` is unset."
    )
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    torch_threads: int | None = Field(default=None, description="torch intra-op threads; default: torch's own.")
    max_image_pixels: int = Field(default=40_000_000, description="Larger images are refused (bomb guard).")
    max_image_bytes: int = Field(default=25 * 1024 * 1024, description="Larger image files are refused.")
    shared_dir: Path = Field(default=Path("../shared"), description="Where the shared datasets and weights are.")
    mobilefacenet: Path | None = Field(
        default=None,
        description="The MobileFaceNet ONNX embedder (`faceops optimize --method mobilefacenet`); default: "
        "<shared_dir>/weights/mobilefacenet/MobileFaceNet.onnx.",
    )
    output_dir: Path = Field(default=Path("outputs"), description="Where demos and reports write.")
    # Data versioning (DVC remotes). The local remote works offline; the S3 one needs a bucket.
    dvc_local_remote: Path = Field(
        default=Path(".dvc-storage"), description="Folder of the offline default DVC remote (relative: to the repo)."
    )
    s3_bucket: str | None = Field(default=None, description="Bucket of the S3 DVC remote.")
    s3_prefix: str = Field(default="faceops/dvc", description="Key prefix of the DVC store in the bucket.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 API endpoint (MinIO, moto, ...); unset: AWS's own endpoint."
    )
    s3_region: str | None = Field(default=None, description="S3 region, e.g. 'us-east-1'.")
    s3_access_key_id: SecretStr | None = Field(
        default=None, description="S3 access key; unset: boto3's own chain (AWS_* variables, profiles, roles)."
    )
    s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret key (with the access key).")
    s3_timeout_s: int = Field(default=20, ge=1, description="Connect/read timeout of S3 calls, in seconds.")
    # Experiment tracking and the model registry (MLflow), and the preprocessing cache.
    mlflow_tracking_uri: str = Field(
        default="sqlite:///mlruns.db",
        description="MLflow tracking and registry URI: a local SQLite file by default, or http://host:port of an "
        "`mlflow server`.",
    )
    mlflow_artifacts: Path = Field(
        default=Path("mlartifacts"), description="Artifact folder of runs when the tracking URI is local (SQLite)."
    )
    mlflow_experiment: str = Field(default="faceops", description="MLflow experiment of training/evaluation runs.")
    cache_dir: Path = Field(
        default=Path("outputs/cache"),
        description="This process's cache: aligned face crops by image hash and preprocessing config, trunk "
        "activations, fetched data versions and weights.",
    )
    # Where pipeline steps share things (each step may be a pod with an empty file system).
    store: str | None = Field(
        default=None,
        description="Object store of the caches pipeline steps share: s3://bucket/prefix or a folder; the "
        "pipeline parameter `store` wins.",
    )
    dvc_remote: str | None = Field(
        default=None,
        description="DVC remote (name or URL) pipeline steps push to and fetch data versions from; the "
        "pipeline parameter `remote` wins.",
    )
    monitor_request_log: SecretStr | None = Field(
        default=None,
        description="The request log `faceops monitor run` reads when --request-log is not given: a SQLite file "
        "or the replicas' postgresql:// URL (a secret: in the environment, not on a command line).",
    )

    def mobilefacenet_path(self) -> Path:
        """The MobileFaceNet ONNX file: the setting, or its place in the shared folder."""
        return self.mobilefacenet or self.shared_dir / "weights" / "mobilefacenet" / "MobileFaceNet.onnx"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
