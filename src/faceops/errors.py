"""The FaceOps exception tree.

Every error the core raises on purpose derives from :class:`FaceOpsError`, so callers (the CLI, the
service, pipeline components) can map a whole family to one exit code or HTTP status::

    FaceOpsError
    ├── ConfigError                 a setting or run config is missing or has a bad value
    │   └── InvalidModelFile        a model file that is unreadable, corrupt, or not what its bundle declares
    ├── WeightsNotFound             no embedding weights at the configured path and no way to download them
    ├── InvalidImage                an input that is not a usable image
    │   ├── ImageNotFound           the path does not exist
    │   ├── EmptyImage              a 0-byte file or body
    │   ├── UnsupportedImage        not an image, or a format/mode we cannot decode
    │   ├── CorruptImage            a truncated or damaged image file
    │   └── ImageTooLarge           over the pixel limit (decompression bomb guard) or the byte limit
    ├── NoFaceDetected              a readable image with no face above the detection thresholds
    ├── GalleryError                a gallery file that cannot be read, or one built by another model
    │   └── UnknownIdentity         an identity id that is not enrolled
    ├── PairsFormatError            a verification pairs file that does not follow LFW's format
    ├── DataValidationFailed        a dataset that failed its expectations
    ├── DatasetError                a dataset source that cannot be imported (missing folder, nothing usable,
    │                               a download that failed offline)
    ├── VersioningError             a git / DVC operation on the data failed (not a repository, unknown
    │                               revision, uncommitted data that an operation would overwrite)
    │   └── RemoteUnavailable       a DVC remote that cannot be reached or is not configured
    ├── TrainingError               training cannot run on this data or config (too few identities, ...)
    ├── RegistryError               the experiment tracker / model registry failed or lacks what was asked
    │   ├── TrackingUnavailable     the MLflow tracking server cannot be reached
    │   └── ModelNotFound           no such model, version or alias (e.g. no champion yet)
    ├── PipelineError               a Kubeflow pipeline cannot be compiled or started, or a run of it failed
    │   └── PipelineUnavailable     the pipeline backend (a Kubeflow Pipelines host, kfp.local) is unreachable
    └── MonitoringError             the monitor cannot read its inputs (request log, reference) or send an alert

Third-party failures are wrapped with ``raise ... from exc`` so the original traceback is kept.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CorruptImage",
    "DataValidationFailed",
    "DatasetError",
    "EmptyImage",
    "FaceOpsError",
    "GalleryError",
    "ImageNotFound",
    "ImageTooLarge",
    "InvalidModelFile",
    "InvalidImage",
    "ModelNotFound",
    "MonitoringError",
    "NoFaceDetected",
    "PairsFormatError",
    "PipelineError",
    "PipelineUnavailable",
    "RegistryError",
    "RemoteUnavailable",
    "TrackingUnavailable",
    "TrainingError",
    "UnknownIdentity",
    "UnsupportedImage",
    "VersioningError",
    "WeightsNotFound",
]


class FaceOpsError(Exception):
    """Base class of every error FaceOps raises on purpose."""


class ConfigError(FaceOpsError):
    """A setting or run config is missing or has a bad value."""


class InvalidModelFile(ConfigError):
    """A model file that is unreadable, corrupt, or not what its bundle declares (input size, embedding size)."""


class WeightsNotFound(FaceOpsError):
    """No embedding weights could be found or downloaded."""


class InvalidImage(FaceOpsError):
    """An input that cannot be used as an image.

    Attributes:
        source: the path or a short description of the input that failed.
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.source = source


class ImageNotFound(InvalidImage):
    """The image path does not exist."""


class EmptyImage(InvalidImage):
    """A 0-byte file or request body."""


class UnsupportedImage(InvalidImage):
    """Not an image, or an image format or mode that cannot be decoded."""


class CorruptImage(InvalidImage):
    """A truncated or damaged image file."""


class ImageTooLarge(InvalidImage):
    """An image over the configured pixel or byte limit."""


class NoFaceDetected(FaceOpsError):
    """A readable image in which no face passed the detection thresholds."""

    def __init__(self, source: str | None = None) -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}no face detected (try a lower min_face_size or detection thresholds)")
        self.source = source


class GalleryError(FaceOpsError):
    """A gallery that cannot be read or does not match the model."""


class UnknownIdentity(GalleryError):
    """An identity id that is not enrolled in the gallery."""


class PairsFormatError(FaceOpsError):
    """A verification pairs file that does not follow LFW's pairs.txt format."""


class DataValidationFailed(FaceOpsError):
    """A dataset failed its validation expectations."""


class DatasetError(FaceOpsError):
    """A dataset source that cannot be imported: missing, empty, or a download that failed."""


class VersioningError(FaceOpsError):
    """A git or DVC operation on the versioned data failed."""


class RemoteUnavailable(VersioningError):
    """A DVC remote that is not configured or cannot be reached."""


class TrainingError(FaceOpsError):
    """Training cannot run on the given data or config (too few identities or images, a bad checkpoint)."""


class RegistryError(FaceOpsError):
    """The experiment tracker or model registry failed, or does not hold what was asked for."""


class TrackingUnavailable(RegistryError):
    """The MLflow tracking server cannot be reached."""


class ModelNotFound(RegistryError):
    """No registered model, version or alias matches (for example: no champion has been promoted yet)."""


class PipelineError(FaceOpsError):
    """A Kubeflow pipeline cannot be compiled or started, or a run of it failed (the failed step is named)."""


class PipelineUnavailable(PipelineError):
    """The pipeline backend cannot be reached: no Kubeflow Pipelines API at the host, or no kfp installed."""


class MonitoringError(FaceOpsError):
    """The monitor cannot read the request log or a reference, or an alert sink failed."""
