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

MLflow's failures reach callers as FaceOps errors, mapped in one place (:func:`map_exceptions`, after httpx's
``map_exceptions``): "no such model / version / alias / run" becomes :class:`~faceops.errors.ModelNotFound`, a
tracking server that cannot be reached :class:`~faceops.errors.TrackingUnavailable`, anything else MLflow refuses
:class:`~faceops.errors.RegistryError`; the original exception is kept as ``__cause__``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
import requests
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.model import PythonModel
from mlflow.tracking import MlflowClient

from faceops.detector.gate import DETECTOR_MODEL_NAME  # the trained face detector: a registered model of its own
from faceops.errors import FaceOpsError, ModelNotFound, RegistryError, TrackingUnavailable
from faceops.settings import get_settings

if TYPE_CHECKING:
    from faceops.evaluation.bundle import ModelBundle

log = logging.getLogger(__name__)

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DETECTOR_MODEL_NAME",
    "HISTORY_TAG",
    "MODEL_NAME",
    "delete_version",
    "detector_versions",
    "download_detector",
    "register_detector",
    "alias_version",
    "champion_history",
    "download_artifacts",
    "list_versions",
    "load_bundle",
    "log_artifacts",
    "log_bundle",
    "log_record",
    "map_exceptions",
    "open_run",
    "read_record",
    "rollback",
    "search_records",
    "set_alias",
    "tag_record",
    "tag_version",
    "tracking_uri",
    "version_run_id",
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
    "onnxruntime==1.32.0",
]


class FaceOpsBundleModel(PythonModel):
    """Pyfunc wrapper so generic MLflow tools can load a bundle: input a list of image paths, output
    embeddings."""

    def load_context(self, context: Any) -> None:
        from faceops.evaluation.bundle import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts["bundle"])
        self.recognizer = self.bundle.recognizer()

    def predict(
        self, context: Any, model_input: list[str], params: dict[str, Any] | None = None
    ) -> list[list[float]]:
        """Image paths -> subject-face embeddings (zero rows where no face was found)."""
        return self.recognizer.embed_subjects(list(model_input)).embeddings.tolist()


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: the argument, else the settings'."""
    return uri or get_settings().mlflow_tracking_uri


def _is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


# MLflow error codes meaning "no such thing"; any other MlflowException is a RegistryError.
_MISSING = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})
# Looking a version up by alias or number also answers INVALID_PARAMETER_VALUE when there is none.
_LOOKUP_MISSING = _MISSING | {"INVALID_PARAMETER_VALUE"}
# Third-party exception -> FaceOps error, first match wins.
_EXCEPTION_MAP: tuple[tuple[type[Exception], type[RegistryError]], ...] = (
    (requests.ConnectionError, TrackingUnavailable),
    (requests.Timeout, TrackingUnavailable),
    (MlflowException, RegistryError),
    (requests.RequestException, RegistryError),
)


def _unavailable(uri: str, exc: BaseException) -> str:
    return (
        f"cannot reach the MLflow tracking server at {uri} ({type(exc).__name__}); start it "
        "(`mlflow server --host 127.0.0.1 --port 5000`) or set FACEOPS_MLFLOW_TRACKING_URI"
    )


def _mapped(exc: Exception, uri: str, context: str | None, missing: Collection[str]) -> RegistryError | None:
    """The FaceOps error for ``exc``, or ``None`` when it is not a tracking / registry failure."""
    if isinstance(exc, MlflowException):
        exc = _request_error(exc) or exc  # MLflow re-raises a refused connection as a plain MlflowException
    elif isinstance(exc, requests.RequestException) and not _called_by_tracking_client(exc):
        return None  # an HTTP call of the caller's own code inside a run is not the tracking server's failure
    target = next((target for source, target in _EXCEPTION_MAP if isinstance(exc, source)), None)
    if target is None:
        return None
    if target is TrackingUnavailable:
        return TrackingUnavailable(_unavailable(uri, exc))
    message = exc.message if isinstance(exc, MlflowException) else str(exc)
    if isinstance(exc, MlflowException) and exc.error_code in missing:
        return ModelNotFound(f"{context}: {message}" if context else str(message))
    return RegistryError(f"MLflow ({uri}): {context + ': ' if context else ''}{message}")


def _request_error(exc: BaseException) -> requests.RequestException | None:
    """The connection error or timeout an MLflow exception was raised from, if any."""
    seen: list[BaseException] = []
    link = exc.__cause__ or exc.__context__
    while link is not None and all(link is not e for e in seen):
        if isinstance(link, (requests.ConnectionError, requests.Timeout)):
            return link
        seen.append(link)
        link = link.__cause__ or link.__context__
    return None


def _called_by_tracking_client(exc: BaseException) -> bool:
    """Whether the code that called into requests (the last frame outside it) was MLflow's or this module's."""
    caller = ""
    tb = exc.__traceback__
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if not module.startswith(("requests", "urllib3", "http.", "socket", "ssl")):
            caller = module
        tb = tb.tb_next
    return caller.startswith("mlflow") or caller == __name__


@contextmanager
def map_exceptions(
    uri: str | None = None, context: str | None = None, missing: Collection[str] = _MISSING
) -> Iterator[None]:
    """Re-raise MLflow's and requests' exceptions from the body as FaceOps errors (``raise ... from exc``).

    Args:
        uri: the tracking URI, named in the messages (default: the settings').
        context: what was being done, put in front of MLflow's message.
        missing: MLflow error codes that mean "no such model, version, alias or run" (:class:`ModelNotFound`).
    """
    try:
        yield
    except FaceOpsError:
        raise
    except Exception as exc:
        mapped = _mapped(exc, tracking_uri(uri), context, missing)
        if mapped is None:
            raise
        raise mapped from exc


def _lookup(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)``, or ``None`` when MLflow answers that the model, version or alias does not exist."""
    try:
        return call(*args)
    except MlflowException as exc:
        if exc.error_code in _LOOKUP_MISSING:
            return None
        raise


def _probe(uri: str) -> None:
    if not uri.startswith(("http://", "https://")):
        return
    response = requests.get(uri.rstrip("/") + "/health", timeout=5)
    if not response.ok:
        raise TrackingUnavailable(_unavailable(uri, requests.HTTPError(response.status_code)))


_SESSION_LOCK = threading.RLock()


@contextmanager
def _session(uri: str | None) -> Iterator[MlflowClient]:
    """Point mlflow's fluent API at ``uri`` for the duration, with its errors mapped by :func:`map_exceptions`."""
    from mlflow.tracking._model_registry import utils as registry_state
    from mlflow.tracking._tracking_service import utils as tracking_state

    uri = tracking_uri(uri)
    # One session at a time in a process: the URIs are process-wide, so a session in another thread (the service
    # polls MLflow in worker threads) must neither see this one's URI go away mid-call nor restore its own over it.
    with _SESSION_LOCK, map_exceptions(uri):
        _probe(uri)
        # mlflow keeps the URIs process-wide and also exports them as MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI
        # (inherited by every child process: pipeline steps, CLIs): put all four back exactly as they were, so a
        # session never leaves a URI behind (one that names a server long gone, in a test suite).
        saved = (tracking_state._tracking_uri, registry_state._registry_uri)
        saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield MlflowClient(tracking_uri=uri, registry_uri=uri)
        finally:
            mlflow.set_tracking_uri(saved[0])  # type: ignore[arg-type]  # None: back to unset (mlflow handles it)
            registry_state._registry_uri = saved[1]
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


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
        # MLflow prints the run's link on stdout when it ends: stdout may be a command's JSON output
        with contextlib.redirect_stdout(sys.stderr), mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name, tags=tags
        ) as run:
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

    def log_table(self, columns: dict[str, list[Any]], name: str) -> None:
        """A table (column name -> values) as an MLflow table artifact ``name`` (a ``.json`` path)."""
        mlflow.log_table(data=columns, artifact_file=name)

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
    facts = {
        "threshold": f"{bundle.threshold:.6f}",
        "target_far": str(bundle.target_far),
        "model_id": bundle.model_id,
        "run_id": run_id,
        "data_version": json.dumps(bundle.metadata.get("data_version", ""), sort_keys=True),
        **(tags or {}),
    }
    model_uri = info.model_uri
    return _new_challenger(
        client,
        MODEL_NAME,
        lambda: str(mlflow.register_model(model_uri, MODEL_NAME, await_registration_for=60).version),
        facts,
    )


def _new_challenger(client: MlflowClient, model: str, create: Callable[[], str], facts: dict[str, Any]) -> str:
    """Create a version of ``model`` (``create`` returns its number), tag it with ``facts`` and alias it
    ``challenger``; a version that fails half-way is deleted again, so nothing half-registered is left."""
    version: str | None = None
    try:
        version = create()
        for key, value in facts.items():
            client.set_model_version_tag(model, version, key, str(value)[:5000])
        client.set_registered_model_alias(model, CHALLENGER, version)
    except BaseException:
        if version is not None:
            client.delete_model_version(model, version)
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
        with map_exceptions(uri, context=model_uri, missing=_LOOKUP_MISSING):
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=model_uri, dst_path=str(target), tracking_uri=uri, registry_uri=uri
                )
            )
    found = sorted(local.rglob("bundle.json"))
    if not found:
        raise ModelNotFound(f"{model_uri} is not a FaceOps model (no bundle.json in its artifacts)")
    return ModelBundle.load(found[0].parent)


def alias_version(alias: str, uri: str | None = None, model: str = MODEL_NAME) -> str | None:
    """The version of registered model ``model`` holding ``alias``, or ``None`` (also when nothing is registered
    yet)."""
    with _session(uri) as client:
        held = _lookup(client.get_model_version_by_alias, model, alias)
        return None if held is None else str(held.version)


def list_versions(uri: str | None = None) -> list[dict[str, Any]]:
    """Every registered version, newest first, with its aliases and tags."""
    with _session(uri) as client:
        versions = client.search_model_versions(f"name='{MODEL_NAME}'")
        model = _lookup(client.get_registered_model, MODEL_NAME)
        aliases = dict(model.aliases or {}) if model is not None else {}
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


def version_run_id(version: str, uri: str | None = None) -> str:
    """The id of the MLflow run that registered model version ``version``.

    Raises:
        ModelNotFound: no such version, or one registered without a run.
    """
    with _session(uri) as client:
        found = _lookup(client.get_model_version, MODEL_NAME, str(version))
    if found is None:
        raise ModelNotFound(f"model '{MODEL_NAME}' has no version {version}")
    if not found.run_id:
        raise ModelNotFound(f"model version {version} has no MLflow run")
    return str(found.run_id)


def log_artifacts(
    run_id: str, folder: str | Path, artifact_path: str, uri: str | None = None, context: str | None = None
) -> None:
    """Upload the files of a local ``folder`` as the artifact folder ``artifact_path`` of run ``run_id``.

    Args:
        context: what is being logged, for error messages (e.g. "cannot log the monitoring reference").

    Raises:
        RegistryError: MLflow refused the upload (no such run, a store that cannot be written).
    """
    with _session(uri) as client, map_exceptions(uri, context or f"cannot log to run {run_id}", missing=()):
        client.log_artifacts(run_id, str(folder), artifact_path)


def download_artifacts(
    run_id: str, artifact_path: str, dst: str | Path, uri: str | None = None, context: str | None = None
) -> Path | None:
    """Download the artifact folder or file ``artifact_path`` of run ``run_id`` into ``dst``.

    Returns:
        the local path, or ``None`` when the run has no such artifact.

    Raises:
        RegistryError: MLflow failed to list or download it (no such run, an unreadable store).
    """
    wanted = artifact_path.strip("/")
    parent = wanted.rpartition("/")[0] or None
    with _session(uri) as client, map_exceptions(uri, context or f"cannot fetch from run {run_id}", missing=()):
        if not any(a.path == wanted for a in client.list_artifacts(run_id, parent)):
            return None
        return Path(client.download_artifacts(run_id, artifact_path, str(dst)))


def _require_version(client: MlflowClient, version: str, model: str = MODEL_NAME) -> None:
    if _lookup(client.get_model_version, model, str(version)) is None:
        raise ModelNotFound(f"model '{model}' has no version {version}")


def delete_version(version: str, uri: str | None = None) -> bool:
    """Delete a model version that must not stay half-registered (its gate tags could not be written); best
    effort: False (and a warning) when MLflow cannot do it either."""
    try:
        with _session(uri) as client:
            client.delete_model_version(MODEL_NAME, str(version))
        return True
    except Exception as exc:  # noqa: BLE001 - the caller re-raises its own, first error
        log.warning("could not delete half-registered model version %s: %s", version, exc)
        return False


def tag_version(version: str, tags: dict[str, Any], uri: str | None = None, model: str = MODEL_NAME) -> None:
    """Set tags on a version of registered model ``model`` (e.g. the gate's decision)."""
    with _session(uri) as client:
        _require_version(client, version, model)
        for key, value in tags.items():
            client.set_model_version_tag(model, str(version), key, str(value)[:5000])


def champion_history(uri: str | None = None, model: str = MODEL_NAME) -> list[dict[str, Any]]:
    """Promotions and rollbacks of registered model ``model``, oldest first: ``{version, previous, action, reason,
    at}``."""
    with _session(uri) as client:
        return _history(client, model)


def _history(client: MlflowClient, name: str = MODEL_NAME) -> list[dict[str, Any]]:
    model = _lookup(client.get_registered_model, name)
    return json.loads((model.tags or {}).get(HISTORY_TAG, "[]")) if model is not None else []


def set_alias(
    alias: str,
    version: str,
    reason: str,
    uri: str | None = None,
    action: str = "promote",
    model: str = MODEL_NAME,
) -> None:
    """Move ``alias`` of registered model ``model`` to ``version``; moves of ``champion`` are appended to the
    history with the reason."""
    with _session(uri) as client:
        _require_version(client, version, model)
        held = _lookup(client.get_model_version_by_alias, model, CHAMPION) if alias == CHAMPION else None
        previous = None if held is None else str(held.version)
        client.set_registered_model_alias(model, alias, str(version))
        if alias != CHAMPION:
            return
        history = _history(client, model)
        history.append(
            {
                "version": str(version),
                "previous": previous,
                "action": action,
                "reason": reason[:300],
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        client.set_registered_model_tag(model, HISTORY_TAG, json.dumps(history[-_HISTORY_KEEP:]))
        challenger = _lookup(client.get_model_version_by_alias, model, CHALLENGER)
        if challenger is not None and str(challenger.version) == str(version):
            client.delete_registered_model_alias(model, CHALLENGER)


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


# -- records: small tagged runs in an experiment of their own (the monitor's durable state) -------------------
_TAG_LIMIT = 7500  # MLflow refuses tag values over 8000 characters


def _record_experiment(client: MlflowClient, uri: str, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage != "active":
            raise RegistryError(f"MLflow ({uri}): the experiment {name!r} is deleted; restore it or use another")
        return str(experiment.experiment_id)
    location = None
    if _is_local(uri):
        location = (get_settings().mlflow_artifacts.expanduser().resolve() / name).as_uri()
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except MlflowException:  # another process may have created it in between
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def log_record(
    experiment: str,
    tags: dict[str, Any],
    *,
    start_time_ms: int | None = None,
    run_name: str | None = None,
    payload: dict[str, Any] | None = None,
    payload_name: str = "record.json",
    uri: str | None = None,
) -> str:
    """Write a record: a finished run in ``experiment`` (created on first use) carrying ``tags`` (values
    cut to MLflow's tag limit) and optionally ``payload`` as a JSON artifact; returns its run id.

    ``start_time_ms`` orders records (:func:`search_records` lists the newest first).
    """
    uri = tracking_uri(uri)
    with _session(uri) as client, map_exceptions(uri, f"cannot write a record to experiment {experiment!r}"):
        experiment_id = _record_experiment(client, uri, experiment)
        run = client.create_run(
            experiment_id,
            start_time=start_time_ms,
            tags={k: str(v)[:_TAG_LIMIT] for k, v in tags.items() if v is not None},
            run_name=run_name,
        )
        run_id = str(run.info.run_id)
        # MLflow prints the run's link on stdout when it ends; stdout may be a command's JSON output
        with contextlib.redirect_stdout(sys.stderr):
            try:
                if payload is not None:
                    client.log_dict(run_id, payload, payload_name)
            except BaseException:
                client.set_terminated(run_id, "FAILED")
                raise
            client.set_terminated(run_id, "FINISHED")
        return run_id


def tag_record(run_id: str, tags: dict[str, Any], uri: str | None = None) -> None:
    """Set (or replace) tags of a record."""
    uri = tracking_uri(uri)
    with _session(uri) as client, map_exceptions(uri, f"cannot tag the record {run_id}"):
        for key, value in tags.items():
            if value is not None:
                client.set_tag(run_id, key, str(value)[:_TAG_LIMIT])


def search_records(
    experiment: str, filter_string: str = "", *, max_results: int = 50, uri: str | None = None
) -> list[dict[str, Any]]:
    """The records of ``experiment`` matching an MLflow filter (e.g. ``tags.`kind` = 'trigger'``), newest
    (by start time) first: ``{run_id, start_time_ms, tags}``; none when the experiment does not exist yet."""
    uri = tracking_uri(uri)
    with _session(uri) as client, map_exceptions(uri, f"cannot search the records of {experiment!r}"):
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        runs = client.search_runs(
            [found.experiment_id],
            filter_string=filter_string,
            max_results=max_results,
            order_by=["attributes.start_time DESC"],
        )
        return [
            {"run_id": str(r.info.run_id), "start_time_ms": r.info.start_time, "tags": dict(r.data.tags)}
            for r in runs
        ]


def read_record(run_id: str, payload_name: str = "record.json", uri: str | None = None) -> dict[str, Any] | None:
    """The JSON payload of a record, or ``None`` when it has none."""
    uri = tracking_uri(uri)
    with tempfile.TemporaryDirectory(prefix="faceops-record-") as tmp:
        local = download_artifacts(run_id, payload_name, tmp, uri, f"cannot read the record {run_id}")
        if local is None:
            return None
        loaded = json.loads(local.read_text())
    return loaded if isinstance(loaded, dict) else {"value": loaded}


# -- the trained face detector: its own registered model (a weights file, not a pyfunc) -------------------------
_DETECTOR_ARTIFACT = "detector"


def register_detector(
    weights: str | Path,
    metrics: dict[str, float] | None = None,
    tags: dict[str, Any] | None = None,
    model: str = DETECTOR_MODEL_NAME,
    uri: str | None = None,
    run_name: str = "register-detector",
) -> dict[str, str]:
    """Log a detector weights file in a new run (artifact folder ``detector``), register it as a new version of
    ``model`` with ``tags`` and alias it ``challenger``; either all of it happens or the version is deleted again.

    Returns:
        ``version`` and ``run_id``.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise ModelNotFound(f"detector weights file {weights} not found")
    with open_run(run_name, uri) as run:
        run.log_metrics(metrics or {})
        run.log_artifact(weights, _DETECTOR_ARTIFACT)
        run_id = run.run_id
        source = f"{mlflow.get_artifact_uri(_DETECTOR_ARTIFACT)}"
    with _session(uri) as client:
        if _lookup(client.get_registered_model, model) is None:
            client.create_registered_model(model, description="FaceOps' trained face detector (faceops.detector)")
        facts = {"run_id": run_id, "file": weights.name, **(tags or {})}
        version = _new_challenger(
            client, model, lambda: str(client.create_model_version(model, source, run_id=run_id).version), facts
        )
    return {"version": version, "run_id": run_id}


def detector_versions(model: str = DETECTOR_MODEL_NAME, uri: str | None = None) -> list[dict[str, Any]]:
    """Every version of the detector model, newest first, with its aliases and tags (empty when none)."""
    with _session(uri) as client:
        found = _lookup(client.get_registered_model, model)
        if found is None:
            return []
        aliases = dict(found.aliases or {})
        rows = [
            {
                "version": str(v.version),
                "aliases": sorted(a for a, held in aliases.items() if str(held) == str(v.version)),
                "run_id": v.run_id,
                "tags": dict(v.tags or {}),
            }
            for v in client.search_model_versions(f"name='{model}'")
        ]
    return sorted(rows, key=lambda r: int(r["version"]), reverse=True)


def download_detector(
    version: str, dst: str | Path, model: str = DETECTOR_MODEL_NAME, uri: str | None = None
) -> Path:
    """Download the weights file of detector version ``version`` (a number, or an alias such as ``champion``)
    into ``dst``.

    Raises:
        ModelNotFound: no such version or alias, or a version without its weights file.
    """
    with _session(uri) as client:
        found = (
            _lookup(client.get_model_version, model, str(version))
            if str(version).isdigit()
            else _lookup(client.get_model_version_by_alias, model, str(version))
        )
        if found is None:
            raise ModelNotFound(f"registered model '{model}' has no version or alias {version!r}")
        with map_exceptions(uri, context=f"cannot fetch detector version {found.version}", missing=_LOOKUP_MISSING):
            local = Path(client.download_artifacts(found.run_id, _DETECTOR_ARTIFACT, str(dst)))
    files = sorted(p for p in local.rglob("*") if p.is_file())
    if not files:
        raise ModelNotFound(f"detector version {found.version} of '{model}' has no weights file")
    return files[0]
