"""The MLflow adapter (the only module importing mlflow): runs, registry, aliases, champion history.

Every model version is a :class:`~faceops.evaluation.bundle.ModelBundle` folder logged as an MLflow pyfunc model (artifact
``bundle``), so whoever loads it gets the weights, the preprocessing config and the calibrated threshold
together. Versions live under one registered model, :data:`MODEL_NAME`; a new one gets the alias
``challenger``, the one in production holds ``champion``. Promotions and rollbacks are appended to a JSON
history kept as a registered-model tag (:data:`HISTORY_TAG`), so "which version was champion when" survives
alias moves.

The tracking URI comes from the ``FACEOPS_MLFLOW_TRACKING_URI`` setting (default: ``sqlite:///mlruns.db`` with
artifacts in ``mlartifacts/``) unless a function is given one. An ``http(s)`` server is probed first so an
unreachable server fails in seconds with :class:`~faceops.errors.TrackingUnavailable` instead of retrying for
minutes.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from faceops.errors import ModelNotFound, RegistryError, TrackingUnavailable
from faceops.settings import get_settings

if TYPE_CHECKING:
    from faceops.evaluation.bundle import ModelBundle

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "HISTORY_TAG",
    "MODEL_NAME",
    "alias_version",
    "champion_history",
    "list_versions",
    "load_bundle",
    "log_bundle",
    "open_run",
    "rollback",
    "set_alias",
    "tag_version",
    "tracking_uri",
]

MODEL_NAME = "faceops"
CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "faceops.champion_history"
_HISTORY_KEEP = 30  # MLflow tag values are limited to a few kB: keep the most recent entries
_PIP_REQUIREMENTS = [
    "faceops",
    "torch==2.14.1",
    "torchvision==0.29.1",
    "facenet-pytorch==2.6.0",
    "mlflow==3.17.2",
]


class FaceOpsBundleModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper so generic MLflow tools can load a bundle: input a list of image paths, output
    embeddings."""

    def load_context(self, context: Any) -> None:
        from faceops.evaluation.bundle import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts["bundle"])
        self.pipeline = self.bundle.pipeline()

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> list[list[float]]:
        """Image paths -> subject-face embeddings (zero rows where no face was found)."""
        return self.pipeline.embed_subjects(list(model_input)).embeddings.tolist()


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: the argument, else the settings'."""
    return uri or get_settings().mlflow_tracking_uri


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def _probe(uri: str) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=5)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise TrackingUnavailable(
            f"cannot reach the MLflow tracking server at {uri} ({type(exc).__name__}); start it "
            "(`mlflow server --host 127.0.0.1 --port 5000`) or set FACEOPS_MLFLOW_TRACKING_URI"
        ) from exc


@contextmanager
def _session(uri: str | None) -> Iterator[MlflowClient]:
    """Point mlflow's fluent API at ``uri`` for the duration, and turn its errors into ``RegistryError``."""
    uri = tracking_uri(uri)
    _probe(uri)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise ModelNotFound(str(exc.message)) from exc
        raise RegistryError(f"MLflow ({uri}): {exc.message}") from exc
    finally:
        if previous:
            mlflow.set_tracking_uri(previous)
            mlflow.set_registry_uri(previous)


def _experiment_id(client: MlflowClient, uri: str) -> str:
    name = get_settings().mlflow_experiment
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if _is_local(uri):
        location = get_settings().mlflow_artifacts.expanduser().resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


@contextmanager
def open_run(
    run_name: str | None = None, uri: str | None = None, tags: dict[str, str] | None = None
) -> Iterator[Any]:
    """An MLflow run in the FaceOps experiment; yields an object with ``log_params``/``log_metrics``/...
    methods.

    The run is marked FAILED if the body raises, so an interrupted training never looks finished.
    """
    with _session(uri) as client:
        experiment_id = _experiment_id(client, tracking_uri(uri))
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            yield _Run(run.info.run_id)


class _Run:
    """The few logging calls training and evaluation need, so they never import mlflow themselves."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def log_params(self, params: dict[str, Any]) -> None:
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        clean = {k.replace("@", "_at_"): float(v) for k, v in metrics.items() if v is not None and v == v}
        mlflow.log_metrics(clean, step=step)

    def log_dict(self, payload: dict[str, Any], name: str) -> None:
        mlflow.log_dict(payload, name)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        mlflow.log_artifact(str(path), artifact_path=folder)

    def set_tags(self, tags: dict[str, Any]) -> None:
        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_bundle(self, bundle: ModelBundle | str | Path, tags: dict[str, str] | None = None) -> str:
        """Log and register a bundle under this run; see :func:`log_bundle`."""
        return _log_and_register(MlflowClient(), bundle, self.run_id, tags)


def log_bundle(
    bundle: ModelBundle | str | Path,
    uri: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Log a bundle as an MLflow model in a new run, register it under :data:`MODEL_NAME`, alias it
    ``challenger``.

    Either every step succeeds or the new version is deleted again (no half-registered model).

    Returns:
        the new model version (a string, as MLflow numbers them).
    """
    with open_run(run_name or "register", uri) as run:
        return run.log_bundle(bundle, tags)


def _log_and_register(
    client: MlflowClient, bundle: ModelBundle | str | Path, run_id: str, tags: dict[str, str] | None
) -> str:
    from faceops.evaluation.bundle import ModelBundle

    with tempfile.TemporaryDirectory(prefix="faceops-bundle-") as tmp:
        if isinstance(bundle, ModelBundle):
            folder = bundle.save(Path(tmp) / "bundle")
        else:
            folder = Path(bundle)
            bundle = ModelBundle.load(folder)  # refuse a folder that is not a loadable bundle before logging
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=FaceOpsBundleModel(),
            artifacts={"bundle": str(folder)},
            pip_requirements=_PIP_REQUIREMENTS,
        )
    version: str | None = None
    try:
        registered = mlflow.register_model(info.model_uri, MODEL_NAME, await_registration_for=60)
        version = str(registered.version)
        facts = {
            "threshold": f"{bundle.threshold:.6f}",
            "target_far": str(bundle.target_far),
            "model_id": bundle.model_id,
            "run_id": run_id,
            "data_version": json.dumps(bundle.metadata.get("data_version", ""), sort_keys=True),
            **(tags or {}),
        }
        for key, value in facts.items():
            client.set_model_version_tag(MODEL_NAME, version, key, str(value)[:5000])
        client.set_registered_model_alias(MODEL_NAME, CHALLENGER, version)
    except BaseException:
        if version is not None:
            client.delete_model_version(MODEL_NAME, version)
        raise
    return version


def load_bundle(model_uri: str, uri: str | None = None, dst: str | Path | None = None) -> ModelBundle:
    """Load a bundle from ``models:/faceops@champion``-style URIs, ``runs:/`` URIs or a local bundle
    folder."""
    from faceops.evaluation.bundle import ModelBundle

    if not model_uri.startswith(("models:/", "runs:/")) and "://" not in model_uri:
        return ModelBundle.load(model_uri)
    with _session(uri):
        target = Path(dst) if dst else Path(tempfile.mkdtemp(prefix="faceops-model-"))
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(target)))
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                raise ModelNotFound(f"{model_uri}: no such model in the registry ({exc.message})") from exc
            raise
    found = sorted(local.rglob("bundle.json"))
    if not found:
        raise ModelNotFound(f"{model_uri} is not a FaceOps model (no bundle.json in its artifacts)")
    return ModelBundle.load(found[0].parent)


def alias_version(alias: str, uri: str | None = None) -> str | None:
    """The version holding ``alias``, or ``None`` (also when nothing is registered yet)."""
    with _session(uri) as client:
        try:
            return str(client.get_model_version_by_alias(MODEL_NAME, alias).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            raise


def list_versions(uri: str | None = None) -> list[dict[str, Any]]:
    """Every registered version, newest first, with its aliases and tags."""
    with _session(uri) as client:
        versions = client.search_model_versions(f"name='{MODEL_NAME}'")
        try:
            aliases = dict(client.get_registered_model(MODEL_NAME).aliases or {})
        except MlflowException:
            aliases = {}
        rows = [
            {
                "version": str(v.version),
                "aliases": sorted(a for a, held in aliases.items() if str(held) == str(v.version)),
                "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.creation_timestamp / 1000)),
                "run_id": v.run_id,
                "tags": dict(v.tags or {}),
            }
            for v in versions
        ]
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def _require_version(client: MlflowClient, version: str) -> None:
    try:
        client.get_model_version(MODEL_NAME, str(version))
    except MlflowException as exc:
        raise ModelNotFound(f"model '{MODEL_NAME}' has no version {version}") from exc


def tag_version(version: str, tags: dict[str, Any], uri: str | None = None) -> None:
    """Set tags on a model version (e.g. the gate's decision)."""
    with _session(uri) as client:
        _require_version(client, version)
        for key, value in tags.items():
            client.set_model_version_tag(MODEL_NAME, str(version), key, str(value)[:5000])


def champion_history(uri: str | None = None) -> list[dict[str, Any]]:
    """Promotions and rollbacks, oldest first: ``{version, previous, action, reason, at}``."""
    with _session(uri) as client:
        return _history(client)


def _history(client: MlflowClient) -> list[dict[str, Any]]:
    try:
        tags = client.get_registered_model(MODEL_NAME).tags or {}
    except MlflowException:
        return []
    return json.loads(tags.get(HISTORY_TAG, "[]"))


def set_alias(alias: str, version: str, reason: str, uri: str | None = None, action: str = "promote") -> None:
    """Move ``alias`` to ``version``; moves of ``champion`` are appended to the history with the reason."""
    with _session(uri) as client:
        _require_version(client, version)
        previous = None
        if alias == CHAMPION:
            try:
                previous = str(client.get_model_version_by_alias(MODEL_NAME, CHAMPION).version)
            except MlflowException:
                previous = None
        client.set_registered_model_alias(MODEL_NAME, alias, str(version))
        if alias != CHAMPION:
            return
        history = _history(client)
        history.append(
            {
                "version": str(version),
                "previous": previous,
                "action": action,
                "reason": reason[:300],
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        client.set_registered_model_tag(MODEL_NAME, HISTORY_TAG, json.dumps(history[-_HISTORY_KEEP:]))
        try:
            if str(client.get_model_version_by_alias(MODEL_NAME, CHALLENGER).version) == str(version):
                client.delete_registered_model_alias(MODEL_NAME, CHALLENGER)
        except MlflowException:
            pass


def rollback(version: str | None = None, reason: str = "rollback by hand", uri: str | None = None) -> str:
    """Give ``champion`` back to ``version``, or by default to the version the current champion replaced.

    Repeated rollbacks walk back through the promotions (3 -> 2 -> 1), like popping a stack.

    Raises:
        ModelNotFound: no champion yet, or no earlier champion to go back to.
    """
    current = alias_version(CHAMPION, uri)
    if current is None:
        raise ModelNotFound(f"registered model '{MODEL_NAME}' has no champion: nothing to roll back")
    if version is None:
        earlier = [
            h["previous"]
            for h in champion_history(uri)
            if h["version"] == current and h["action"] == "promote" and h["previous"]
        ]
        if not earlier:
            raise ModelNotFound(f"version {current} replaced no earlier champion: nothing to roll back to")
        version = earlier[-1]
    set_alias(CHAMPION, str(version), f"{reason} (from version {current})", uri, action="rollback")
    return str(version)
