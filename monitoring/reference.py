"""The champion and its reference in MLflow: log a reference with a model version's run, fetch it back, and
load the champion's bundle; everything fetched is cached locally by version.

The reference is the artifact folder ``monitoring_reference/`` of the run that registered the model version
(:func:`log_reference`; ``faceops monitor reference``). A champion promoted without one gets it computed on
the configured data version the first time the monitor needs it (:func:`ensure_reference`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from faceops.errors import DataValidationFailed, ModelNotFound, MonitoringError, RegistryError
from faceops.telemetry.reference import ARTIFACT_PATH, Reference, compute_reference, log_to_run

__all__ = ["champion_version", "ensure_reference", "fetch_reference", "load_model", "log_reference"]

log = logging.getLogger(__name__)


def champion_version(uri: str | None) -> str:
    """The version holding ``champion``; raises :class:`ModelNotFound` when there is none."""
    from faceops import registry

    version = registry.alias_version(registry.CHAMPION, uri)
    if version is None:
        raise ModelNotFound(
            f"registered model '{registry.MODEL_NAME}' has no champion: nothing to monitor yet"
        )
    return version


def log_reference(reference: Reference, version: str, uri: str | None = None) -> str:
    """Log ``reference`` as the ``monitoring_reference`` artifact of ``version``'s run; returns the run id."""
    from faceops import registry

    run_id = registry.version_run_id(version, uri)
    reference.meta = {**reference.meta, "model_version": str(version)}
    try:
        log_to_run(reference, run_id, uri)
    except RegistryError as exc:
        raise RegistryError(f"version {version}: {exc}") from exc
    return run_id


def fetch_reference(version: str, uri: str | None, cache_dir: Path) -> Reference | None:
    """The reference logged with ``version`` (cached under ``cache_dir``), or ``None`` if it has none."""
    from faceops import registry

    local = cache_dir / f"reference-v{version}"
    if (local / "reference.json").is_file():
        return Reference.load(local)
    run_id = registry.version_run_id(version, uri)
    with tempfile.TemporaryDirectory(prefix="faceops-reference-") as tmp:
        got = registry.download_artifacts(
            run_id, ARTIFACT_PATH, tmp, uri, context=f"cannot fetch the monitoring reference of version {version}"
        )
        if got is None:
            return None
        reference = Reference.load(got)
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(local, ignore_errors=True)
        shutil.copytree(got, local)
    return reference


def load_model(version: str, uri: str | None, cache_dir: Path):  # type: ignore[no-untyped-def]
    """The :class:`~faceops.evaluation.bundle.ModelBundle` of ``version`` (downloaded once into ``cache_dir``)."""
    from faceops import registry
    from faceops.evaluation.bundle import ModelBundle

    local = cache_dir / f"model-v{version}"
    if (local / "bundle.json").is_file():
        return ModelBundle.load(local)
    bundle = registry.load_bundle(f"models:/{registry.MODEL_NAME}/{version}", uri)
    shutil.rmtree(local, ignore_errors=True)
    bundle.save(local)
    return bundle


def ensure_reference(version: str, uri: str | None, data_root: Path | None, cache_dir: Path) -> Reference:
    """The champion's reference; computed on ``data_root`` and logged when its run has none.

    Raises:
        MonitoringError: the version has no reference and no data root is configured to compute one.
    """
    reference = fetch_reference(version, uri, cache_dir)
    if reference is not None:
        return reference
    if data_root is None:
        raise MonitoringError(
            f"champion version {version} has no monitoring reference: log one with "
            "'faceops monitor reference' or set data_root in the monitor config"
        )
    log.warning("champion version %s has no monitoring reference: computing it on %s", version, data_root)
    try:
        reference = compute_reference(load_model(version, uri, cache_dir), data_root)
    except DataValidationFailed as exc:
        raise MonitoringError(f"cannot compute the reference of version {version}: {exc}") from exc
    log_reference(reference, version, uri)
    reference.save(cache_dir / f"reference-v{version}")
    return reference
