"""The Kubeflow Pipelines API client (the one module talking to a KFP server): connection, upload, runs.

A thin adapter over ``kfp.Client`` (kfp 2.17, the ``/apis/v2beta1`` REST API) so its churn stays in one file:

* **Connection** (:class:`~faceops.kfp.pipelines.connection.KfpConnection`, re-exported here): host, namespace
  and credentials (a bearer token, or a token file such as a pod's projected service-account token).
* **Upload and run** (:meth:`KfpClient.run`): the compiled pipeline is uploaded once per content (a new
  pipeline, or a version named by the spec's hash), the experiment is found or created in the namespace, and
  the run starts from that pipeline version, so the Kubeflow UI shows pipeline, version, experiment and run.
* **Recurring runs** (:meth:`KfpClient.schedule`) with a cron expression; **a run's state**
  (:meth:`KfpClient.run_state`).

Every failure comes back as a :mod:`faceops.errors` error naming the host, the namespace and what was being
done (:func:`~faceops.kfp.pipelines.connection.mapped`): no answer, 401, 403, 404, 5xx. ``kfp.Client`` prints
links on stdout; they are sent to the log instead, so ``--json`` output stays clean.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faceops.kfp.pipelines.connection import KfpConnection, is_connection_problem, mapped

from faceops.errors import ConfigError, FaceOpsError, PipelineError

__all__ = [
    "KfpClient",
    "KfpConnection",
    "is_connection_problem",
    "run_state",
    "schedule_pipeline",
    "submit_pipeline",
]

log = logging.getLogger(__name__)


class KfpClient:
    """A connected ``kfp.Client``; every call maps its failures to FaceOps errors (see the module doc).

    Raises (on construction):
        ConfigError: no host, or credentials that are missing or unreadable.
        PipelineUnavailable: nothing answers at the host.
        PipelineError: the server refused the health check (401, 403, 404, 5xx).
    """

    def __init__(self, connection: KfpConnection) -> None:
        import kfp_server_api
        from kfp.client import Client, ServiceAccountTokenVolumeCredentials

        self.connection = connection
        self.host = connection.resolved_host()
        self.namespace = connection.resolved_namespace()
        kind, value = connection.credentials()
        self.auth = kind  # what was sent, for the error messages
        token = value if kind == "token" else None
        credentials = ServiceAccountTokenVolumeCredentials(path=value) if kind == "token_path" else None
        # One health call of our own first: kfp.Client's get_kfp_healthz retries 5 times, 5 s apart, and
        # then hides the HTTP status behind a TimeoutError.
        config = kfp_server_api.Configuration(host=self.host)
        if connection.verify_ssl is not None:
            config.verify_ssl = connection.verify_ssl
        if connection.ssl_ca_cert:
            config.ssl_ca_cert = connection.ssl_ca_cert
        if token or credentials:
            config.api_key["authorization"] = token or "placeholder"
            config.api_key_prefix["authorization"] = "Bearer"
            if credentials is not None:
                config.refresh_api_key_hook = credentials.refresh_api_key_hook
        with self._calling("checking the API's health (GET /apis/v2beta1/healthz)"):
            with kfp_server_api.ApiClient(config) as api:
                self.health = kfp_server_api.HealthzServiceApi(api).healthz_service_get_healthz()
            with warnings.catch_warnings():  # kfp.Client warns on every construction that it needs KFP >= 2
                warnings.filterwarnings("ignore", "This client only works with Kubeflow Pipeline", FutureWarning)
                self.client = Client(
                    host=self.host,
                    namespace=self.namespace or "kubeflow",
                    existing_token=token,
                    credentials=credentials,
                    verify_ssl=connection.verify_ssl,
                    ssl_ca_cert=connection.ssl_ca_cert,
                )
        if self.health.multi_user and not self.namespace:
            log.warning("%s is multi-user: give a namespace (a Kubeflow profile)", connection.where())

    # -- error mapping ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _calling(self, action: str) -> Iterator[None]:
        """Run the body quietly (kfp prints links) and map its failures to FaceOps errors about ``action``."""
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                yield
        except FaceOpsError:
            raise
        except Exception as exc:  # kfp and its HTTP stack raise many unrelated types; mapped by name/status
            raise mapped(self.connection, self.auth, action, exc) from exc
        finally:
            for line in printed.getvalue().splitlines():
                log.info("kfp: %s", line)

    # -- calls --------------------------------------------------------------------------------------------
    def ensure_experiment(self, name: str) -> str:
        """The id of experiment ``name`` in the namespace, created when missing."""
        with self._calling(f"finding or creating the experiment {name!r}"):
            experiment = self.client.create_experiment(name=name, namespace=self.namespace)
        return str(experiment.experiment_id)

    def upload(self, package: str | Path, name: str) -> tuple[str, str]:
        """Upload a compiled pipeline once per content; returns ``(pipeline_id, pipeline_version_id)``.

        A new pipeline ``name`` gets the package as its first version (described with the package's sha256);
        an existing one gets a version named ``<name>-<sha256, 12 hex>`` unless a version of that content is
        there already.
        """
        package = str(package)
        digest = hashlib.sha256(Path(package).read_bytes()).hexdigest()[:12]
        version_name, description = f"{name}-{digest}", f"FaceOps {name} (spec sha256:{digest})"
        with self._calling(f"looking up the pipeline {name!r}"):
            found = self.client.list_pipelines(filter=_equals("display_name", name), namespace=self.namespace)
        pipelines = found.pipelines or []
        if not pipelines:
            with self._calling(f"uploading the pipeline {name!r} (POST /apis/v2beta1/pipelines/upload)"):
                pipeline = self.client.upload_pipeline(package, pipeline_name=name, description=description, namespace=self.namespace)
                versions = self.client.list_pipeline_versions(pipeline.pipeline_id, sort_by="created_at desc", page_size=1)
            if not versions.pipeline_versions:
                raise PipelineError(f"{self.connection.where()}: the pipeline {name!r} was uploaded but has no version")
            return str(pipeline.pipeline_id), str(versions.pipeline_versions[0].pipeline_version_id)
        pipeline_id = str(pipelines[0].pipeline_id)
        with self._calling(f"looking up the versions of the pipeline {name!r}"):
            same = self.client.list_pipeline_versions(pipeline_id, filter=_equals("display_name", version_name))
            first = self.client.list_pipeline_versions(pipeline_id, filter=_equals("display_name", name))
        for version in [*(same.pipeline_versions or []), *(first.pipeline_versions or [])]:
            if version.display_name == version_name or (version.description or "").endswith(f"sha256:{digest})"):
                return pipeline_id, str(version.pipeline_version_id)
        with self._calling(
            f"uploading version {version_name!r} of the pipeline {name!r} (POST /apis/v2beta1/pipelines/upload_version)"
        ):
            version = self.client.upload_pipeline_version(package, version_name, pipeline_id=pipeline_id, description=description)
        return pipeline_id, str(version.pipeline_version_id)

    def run(
        self,
        package: str | Path,
        name: str,
        arguments: dict[str, Any],
        *,
        experiment: str,
        run_name: str,
        service_account: str | None = None,
    ) -> dict[str, Any]:
        """Upload the package (:meth:`upload`) and start a run of it in ``experiment``."""
        experiment_id = self.ensure_experiment(experiment)
        pipeline_id, version_id = self.upload(package, name)
        with self._calling(f"starting a run of {name!r} in experiment {experiment!r} (POST /apis/v2beta1/runs)"):
            run = self.client.run_pipeline(
                experiment_id=experiment_id,
                job_name=run_name,
                params=arguments,
                pipeline_id=pipeline_id,
                version_id=version_id,
                service_account=service_account,
            )
        return {
            "run_id": run.run_id,
            "status": _state(run.state) or "PENDING",
            **self._where(experiment, experiment_id, pipeline_id, version_id),
            "url": f"{self.host}/#/runs/details/{run.run_id}",
        }

    def schedule(
        self,
        package: str | Path,
        name: str,
        arguments: dict[str, Any],
        *,
        cron: str,
        experiment: str,
        job_name: str,
        max_concurrency: int = 1,
        catchup: bool = False,
        service_account: str | None = None,
    ) -> dict[str, Any]:
        """Upload the package and create a recurring run of it (a 6-field cron expression, seconds first)."""
        _check_cron(cron)
        experiment_id = self.ensure_experiment(experiment)
        pipeline_id, version_id = self.upload(package, name)
        with self._calling(f"creating the recurring run {job_name!r} in experiment {experiment!r} (POST /apis/v2beta1/recurringruns)"):
            job = self.client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=job_name,
                cron_expression=cron,
                max_concurrency=max_concurrency,
                no_catchup=not catchup,
                params=arguments,
                pipeline_id=pipeline_id,
                version_id=version_id,
                service_account=service_account,
            )
        return {
            "recurring_run_id": job.recurring_run_id,
            "cron": cron,
            "status": str(job.status or "ENABLED"),
            **self._where(experiment, experiment_id, pipeline_id, version_id),
            "url": f"{self.host}/#/recurringrun/details/{job.recurring_run_id}",
        }

    def run_state(self, run_id: str) -> dict[str, Any]:
        """The run's ``state`` (PENDING, RUNNING, SUCCEEDED, FAILED, ...; ``NOT_FOUND`` when the server has
        no such run), its ``error`` message, ``finished_at`` and ``url``."""
        from kfp_server_api import ApiException

        try:
            with self._calling(f"reading the state of run {run_id} (GET /apis/v2beta1/runs/{run_id})"):
                run = self.client.get_run(run_id)
        except PipelineError as exc:
            cause = exc.__cause__
            if isinstance(cause, ApiException) and cause.status == 404:
                return {"run_id": run_id, "state": "NOT_FOUND", "error": str(exc), "finished_at": None}
            raise
        error = getattr(run.error, "message", None) if run.error is not None else None
        return {
            "run_id": run_id,
            "state": _state(run.state) or "RUNTIME_STATE_UNSPECIFIED",
            "error": error,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "url": f"{self.host}/#/runs/details/{run_id}",
        }

    def _where(self, experiment: str, experiment_id: str, pipeline_id: str, version_id: str) -> dict[str, Any]:
        return {
            "backend": "kfp",
            "host": self.host,
            "namespace": self.namespace,
            "experiment": experiment,
            "experiment_id": experiment_id,
            "pipeline_id": pipeline_id,
            "pipeline_version_id": version_id,
        }


def _check_cron(cron: str) -> None:
    fields = cron.split()
    if len(fields) != 6:
        raise ConfigError(
            f"cron expression {cron!r} has {len(fields)} field(s); Kubeflow Pipelines wants 6, seconds first "
            "(e.g. '0 0 3 * * *': every day at 03:00)"
        )


def _equals(key: str, value: str) -> str:
    """A v2beta1 list filter: ``key`` equals ``value``."""
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def _state(value: Any) -> str | None:
    return str(value).upper() if value else None


# -- pipelines of this package ----------------------------------------------------------------------------
@contextlib.contextmanager
def _compiled(
    name: str, arguments: dict[str, Any], image: str | None, cache_pvc: str | None = None
) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """Pipeline ``name`` compiled as ``faceops pipeline compile`` writes it: ``(package path, pipeline name,
    arguments without None values)``; arguments it does not take are refused first."""
    import tempfile

    from faceops.kfp.pipelines.run import _without_none, compile_pipelines, pipeline_func

    arguments = _without_none(arguments)  # pipeline parameters cannot hold None
    func = pipeline_func(name, image, cache_pvc)
    known = set(func.component_spec.inputs or {})
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise ConfigError(f"pipeline {name!r} has no parameter(s) {unknown}; it takes {sorted(known)}")
    with tempfile.TemporaryDirectory(prefix="faceops-kfp-") as tmp:
        yield compile_pipelines(tmp, [name], image, cache_pvc)[name], str(func.name), arguments


def _experiment(experiment: str | None) -> str:
    # kfp.Client's own settings: a default, and an override that wins over what the caller asked for
    chosen = experiment or os.environ.get("KF_PIPELINES_DEFAULT_EXPERIMENT_NAME") or "faceops"
    return os.environ.get("KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME") or chosen


def submit_pipeline(
    name: str,
    arguments: dict[str, Any],
    connection: KfpConnection,
    *,
    image: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    service_account: str | None = None,
    cache_pvc: str | None = None,
) -> dict[str, Any]:
    """Compile pipeline ``name`` (``image``, ``cache_pvc``: as ``faceops pipeline compile``), upload it and
    start a run in ``experiment`` (default: ``KF_PIPELINES_DEFAULT_EXPERIMENT_NAME``, else 'faceops'); returns
    at once.

    Returns:
        ``run_id``, ``status`` ('SUBMITTED'), ``state`` (the server's), ``backend``, ``host``, ``namespace``,
        ``experiment(_id)``, ``pipeline`` and its ``pipeline_id`` / ``pipeline_version_id``, ``url``.
    """
    import time

    client = KfpClient(connection)  # an unreachable or refusing server fails before the compilation
    with _compiled(name, arguments, image, cache_pvc) as (package, pipeline, arguments):
        started = client.run(
            package,
            pipeline,
            arguments,
            experiment=_experiment(experiment),
            run_name=run_name or f"{pipeline} {time.strftime('%Y-%m-%d %H:%M:%S')}",
            service_account=service_account,
        )
    return {**started, "state": started["status"], "status": "SUBMITTED", "pipeline": pipeline}


def schedule_pipeline(
    name: str,
    arguments: dict[str, Any],
    connection: KfpConnection,
    *,
    cron: str,
    image: str | None = None,
    experiment: str | None = None,
    job_name: str | None = None,
    max_concurrency: int = 1,
    catchup: bool = False,
    service_account: str | None = None,
    cache_pvc: str | None = None,
) -> dict[str, Any]:
    """Compile pipeline ``name``, upload it and create a recurring run on ``cron`` (6 fields, seconds first)."""
    _check_cron(cron)
    client = KfpClient(connection)
    with _compiled(name, arguments, image, cache_pvc) as (package, pipeline, arguments):
        created = client.schedule(
            package,
            pipeline,
            arguments,
            cron=cron,
            experiment=_experiment(experiment),
            job_name=job_name or f"{pipeline} ({cron})",
            max_concurrency=max_concurrency,
            catchup=catchup,
            service_account=service_account,
        )
    return {**created, "pipeline": pipeline}


def run_state(run_id: str, connection: KfpConnection) -> dict[str, Any]:
    """The state of run ``run_id`` (:meth:`KfpClient.run_state`)."""
    return KfpClient(connection).run_state(run_id)
