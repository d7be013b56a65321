"""Where the served model comes from: a small protocol with a local-folder and an MLflow-alias implementation.

The service asks :meth:`ModelSource.current_version` every few seconds and, when the answer changes, loads the
new version with :meth:`ModelSource.load` beside the running one and swaps. Both return a
:class:`~faceops.evaluation.bundle.ModelBundle`, so the preprocessing config and threshold always come with the weights.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Protocol

from faceops.errors import ConfigError, FaceOpsError
from faceops.evaluation.bundle import ModelBundle

__all__ = ["LocalBundleSource", "MlflowAliasSource", "ModelSource", "SourceUnavailable"]


class SourceUnavailable(FaceOpsError):
    """The model source (e.g. the MLflow server) cannot be reached or has no model under the alias."""


class ModelSource(Protocol):
    """Anything that names the current model version and loads a version."""

    description: str

    def current_version(self) -> str:
        """The version that should be served now; raises :class:`SourceUnavailable`."""
        ...

    def load(self, version: str) -> ModelBundle:
        """Load one version; raises :class:`SourceUnavailable` or :class:`ConfigError`."""
        ...


class LocalBundleSource:
    """A bundle folder on disk; its version is the hash of ``bundle.json`` (replacing the folder swaps)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.description = f"bundle folder {self.directory}"

    def current_version(self) -> str:
        meta = self.directory / "bundle.json"
        try:
            digest = hashlib.sha256(meta.read_bytes()).hexdigest()[:12]
        except OSError as exc:
            raise SourceUnavailable(f"{self.directory} is not a model bundle: {exc}") from exc
        return f"local-{digest}"

    def load(self, version: str) -> ModelBundle:
        return ModelBundle.load(self.directory)


class MlflowAliasSource:
    """The registered version an MLflow alias (``champion``) points at, through :mod:`faceops.registry`.

    The registry adapter probes an HTTP server before each call, so a dead server is seen in seconds (and the
    service keeps serving the model it has) instead of after MLflow's minutes of retries.

    Args:
        tracking_uri: the MLflow server (default: the ``FACEOPS_MLFLOW_TRACKING_URI`` setting).
        alias: the alias to follow.
    """

    def __init__(self, tracking_uri: str | None = None, alias: str = "champion") -> None:
        from faceops import registry  # lazy: mlflow is heavy and only this source needs it

        self._registry = registry
        self.tracking_uri = registry.tracking_uri(tracking_uri)
        self.alias = alias
        self.description = f"MLflow {self.tracking_uri} models:/{registry.MODEL_NAME}@{alias}"

    def current_version(self) -> str:
        try:
            version = self._registry.alias_version(self.alias, self.tracking_uri)
        except (FaceOpsError, OSError) as exc:
            raise SourceUnavailable(f"{self.description}: {_short(exc)}") from exc
        if version is None:
            raise SourceUnavailable(f"{self.description}: no model version holds the alias {self.alias!r}")
        return version

    def load(self, version: str) -> ModelBundle:
        uri = f"models:/{self._registry.MODEL_NAME}/{version}"
        try:
            with tempfile.TemporaryDirectory(prefix="faceops-model-") as tmp:
                return self._registry.load_bundle(uri, self.tracking_uri, dst=tmp)
        except ConfigError:
            raise
        except (FaceOpsError, OSError) as exc:
            raise SourceUnavailable(f"cannot load {uri} from {self.tracking_uri}: {_short(exc)}") from exc


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
