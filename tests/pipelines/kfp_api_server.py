"""A small Kubeflow Pipelines API server for contract tests: the ``/apis/v2beta1`` routes ``kfp.Client`` 2.17 calls.

It is a real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread) whose answers are built from the
generated models of ``kfp_server_api`` (``V2beta1Run``, ``V2beta1Experiment``, ``V2beta1Pipeline``, ...)
serialised by ``ApiClient.sanitize_for_serialization``, and whose request bodies are read back into those
models, so a field the client sends or expects under another name fails the test. It keeps what it was sent
(:attr:`KfpApiServer.requests`: method, path, query, headers, JSON body or multipart parts) and stores
experiments, pipelines, versions (with their uploaded spec), runs and recurring runs in memory.

Knobs: ``token`` (requests without ``Authorization: Bearer <token>`` get 401), ``namespace`` (a multi-user
server: namespaced calls for another namespace get 403), ``fail_with`` (every call answers that HTTP status),
:meth:`KfpApiServer.set_run_state` (what ``GET /runs/{id}`` reports). Errors are grpc-gateway's JSON
``{"error", "code", "message"}``.
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kfp_server_api
import yaml
from kfp_server_api import models

_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 500: 13, 503: 14}
_API = "/apis/v2beta1"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None  # parsed JSON, or {field: (filename, bytes)} for multipart
    status: int = 0


class _Raw:
    """What ``ApiClient.deserialize`` reads: a response with ``data``."""

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


@dataclass
class KfpApiServer:
    token: str | None = None
    namespace: str | None = None
    fail_with: int | None = None
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._api = kfp_server_api.ApiClient()
        self.experiments: dict[str, models.V2beta1Experiment] = {}
        self.pipelines: dict[str, models.V2beta1Pipeline] = {}
        self.versions: dict[str, models.V2beta1PipelineVersion] = {}
        self.packages: dict[str, bytes] = {}  # version id -> the uploaded file
        self.runs: dict[str, models.V2beta1Run] = {}
        self.recurring: dict[str, models.V2beta1RecurringRun] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> KfpApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._api.close()

    # -- test controls ------------------------------------------------------------------------------------
    def set_run_state(self, run_id: str, state: str, message: str | None = None) -> None:
        with self._lock:
            run = self.runs[run_id]
            run.state = state
            if state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
                run.finished_at = _now()
            if message:
                run.error = models.GoogleRpcStatus(code=2, message=message)

    def calls(self, method: str, pattern: str) -> list[Recorded]:
        """The recorded requests whose path matches ``pattern`` (a regex, after /apis/v2beta1)."""
        return [r for r in self.requests if r.method == method and re.fullmatch(_API + pattern, r.path)]

    def uploaded_spec(self, version_id: str) -> str:
        return self.packages[version_id].decode()

    # -- the routes ---------------------------------------------------------------------------------------
    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        routes: list[tuple[str, str, Any]] = [
            ("GET", "/healthz", self._healthz),
            ("GET", "/experiments", self._list_experiments),
            ("POST", "/experiments", self._create_experiment),
            ("GET", "/experiments/([^/:]+)", self._get_experiment),
            ("GET", "/pipelines", self._list_pipelines),
            ("POST", "/pipelines/upload", self._upload),
            ("POST", "/pipelines/upload_version", self._upload_version),
            ("GET", "/pipelines/([^/]+)/versions", self._list_versions),
            ("GET", "/pipelines/([^/]+)/versions/([^/]+)", self._get_version),
            ("POST", "/runs", self._create_run),
            ("GET", "/runs/([^/:]+)", self._get_run),
            ("POST", "/recurringruns", self._create_recurring_run),
            ("GET", "/recurringruns/([^/:]+)", self._get_recurring_run),
        ]
        for verb, pattern, handler in routes:
            match = re.fullmatch(_API + pattern, path)
            if verb == method and match:
                return handler(query, body, *match.groups())
        raise _Refused(404, f"Not Found: {method} {path}")

    def _check_namespace(self, namespace: str | None) -> None:
        if self.namespace is not None and namespace != self.namespace:
            raise _Refused(403, f"PermissionDenied: the caller may not access namespace {namespace!r} (only {self.namespace!r})")

    def _healthz(self, query: dict, body: Any) -> Any:
        return models.V2beta1GetHealthzResponse(multi_user=self.namespace is not None, pipeline_store="database")

    @staticmethod
    def _matches(item: Any, query: dict[str, str]) -> bool:
        if "filter" not in query:
            return True
        for predicate in json.loads(query["filter"]).get("predicates", []):
            if predicate.get("operation") not in ("EQUALS", 1):  # protojson takes the name or the number
                raise _Refused(400, f"InvalidArgument: unsupported filter {predicate}")
            value = predicate.get("stringValue", predicate.get("string_value"))
            if getattr(item, predicate["key"]) != value:
                return False
        return True

    def _list_experiments(self, query: dict, body: Any) -> Any:
        self._check_namespace(query.get("namespace"))
        found = [e for e in self.experiments.values() if e.namespace == query.get("namespace") and self._matches(e, query)]
        return models.V2beta1ListExperimentsResponse(experiments=found or None, total_size=len(found))

    def _create_experiment(self, query: dict, body: Any) -> Any:
        experiment = self._parse(body, "V2beta1Experiment")
        self._check_namespace(experiment.namespace)
        if not experiment.display_name:
            raise _Refused(400, "InvalidArgument: an experiment needs a display_name")
        experiment.experiment_id = str(uuid.uuid4())
        experiment.created_at = _now()
        experiment.storage_state = "AVAILABLE"
        self.experiments[experiment.experiment_id] = experiment
        return experiment

    def _get_experiment(self, query: dict, body: Any, experiment_id: str) -> Any:
        if experiment_id not in self.experiments:
            raise _Refused(404, f"NotFound: experiment {experiment_id}")
        return self.experiments[experiment_id]

    def _list_pipelines(self, query: dict, body: Any) -> Any:
        if query.get("namespace"):
            self._check_namespace(query["namespace"])
        found = [
            p for p in self.pipelines.values() if (p.namespace or None) == (query.get("namespace") or None) and self._matches(p, query)
        ]
        return models.V2beta1ListPipelinesResponse(pipelines=found or None, total_size=len(found))

    def _spec(self, body: Any) -> bytes:
        if not isinstance(body, dict) or "uploadfile" not in body:
            raise _Refused(400, "InvalidArgument: no uploadfile in the multipart body")
        data = body["uploadfile"][1]
        try:
            spec = next(iter(yaml.safe_load_all(data)))
        except Exception as exc:
            raise _Refused(400, f"InvalidArgument: the uploaded file is not YAML: {exc}") from exc
        if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
            raise _Refused(400, "InvalidArgument: the uploaded file is not a compiled pipeline spec")
        return data

    def _add_version(self, pipeline_id: str, name: str, data: bytes, description: str | None) -> Any:
        version = models.V2beta1PipelineVersion(
            pipeline_id=pipeline_id,
            pipeline_version_id=str(uuid.uuid4()),
            display_name=name,
            name=name,
            description=description,
            created_at=_now(),
        )
        self.versions[version.pipeline_version_id] = version
        self.packages[version.pipeline_version_id] = data
        return version

    def _upload(self, query: dict, body: Any) -> Any:
        if query.get("namespace"):
            self._check_namespace(query["namespace"])
        data = self._spec(body)
        name = query.get("display_name") or query.get("name") or body["uploadfile"][0]
        if any(p.display_name == name for p in self.pipelines.values()):
            raise _Refused(409, f"AlreadyExists: a pipeline named {name!r} exists")
        pipeline = models.V2beta1Pipeline(
            pipeline_id=str(uuid.uuid4()),
            display_name=name,
            name=name,
            description=query.get("description"),
            created_at=_now(),
            namespace=query.get("namespace"),
        )
        self.pipelines[pipeline.pipeline_id] = pipeline
        self._add_version(pipeline.pipeline_id, name, data, query.get("description"))
        return pipeline

    def _upload_version(self, query: dict, body: Any) -> Any:
        pipeline_id = query.get("pipelineid")
        if pipeline_id not in self.pipelines:
            raise _Refused(404, f"NotFound: pipeline {pipeline_id}")
        name = query.get("display_name") or query.get("name")
        if not name:
            raise _Refused(400, "InvalidArgument: a pipeline version needs a name")
        if any(v.pipeline_id == pipeline_id and v.display_name == name for v in self.versions.values()):
            raise _Refused(409, f"AlreadyExists: pipeline {pipeline_id} has a version named {name!r}")
        return self._add_version(pipeline_id, name, self._spec(body), query.get("description"))

    def _list_versions(self, query: dict, body: Any, pipeline_id: str) -> Any:
        if pipeline_id not in self.pipelines:
            raise _Refused(404, f"NotFound: pipeline {pipeline_id}")
        found = [v for v in self.versions.values() if v.pipeline_id == pipeline_id and self._matches(v, query)]
        if query.get("sort_by", "").startswith("created_at"):
            found.sort(key=lambda v: (v.created_at, list(self.versions).index(v.pipeline_version_id)))
            if query["sort_by"].endswith("desc"):
                found.reverse()
        found = found[: int(query.get("page_size") or 10)]
        return models.V2beta1ListPipelineVersionsResponse(pipeline_versions=found or None, total_size=len(found))

    def _get_version(self, query: dict, body: Any, pipeline_id: str, version_id: str) -> Any:
        version = self.versions.get(version_id)
        if version is None or version.pipeline_id != pipeline_id:
            raise _Refused(404, f"NotFound: pipeline version {version_id}")
        return version

    def _reference(self, item: Any) -> None:
        """Refuse a run or recurring run that names no experiment or pipeline this server knows."""
        experiment = self.experiments.get(item.experiment_id)
        if experiment is None:
            raise _Refused(404, f"NotFound: experiment {item.experiment_id}")
        self._check_namespace(experiment.namespace)
        reference = item.pipeline_version_reference
        if reference is None and item.pipeline_spec is None:
            raise _Refused(400, "InvalidArgument: neither a pipeline spec nor a pipeline version reference")
        if reference is not None:
            version = self.versions.get(reference.pipeline_version_id)
            if version is None or version.pipeline_id != reference.pipeline_id:
                raise _Refused(404, f"NotFound: pipeline version {reference.pipeline_version_id}")

    def _create_run(self, query: dict, body: Any) -> Any:
        run = self._parse(body, "V2beta1Run")
        self._reference(run)
        run.run_id = str(uuid.uuid4())
        run.state = "PENDING"
        run.created_at = _now()
        run.storage_state = "AVAILABLE"
        self.runs[run.run_id] = run
        return run

    def _get_run(self, query: dict, body: Any, run_id: str) -> Any:
        if run_id not in self.runs:
            raise _Refused(404, f"NotFound: run {run_id}")
        return self.runs[run_id]

    def _create_recurring_run(self, query: dict, body: Any) -> Any:
        job = self._parse(body, "V2beta1RecurringRun")
        self._reference(job)
        if job.trigger is None or (job.trigger.cron_schedule is None and job.trigger.periodic_schedule is None):
            raise _Refused(400, "InvalidArgument: a recurring run needs a trigger")
        job.recurring_run_id = str(uuid.uuid4())
        job.created_at = job.updated_at = _now()
        job.status = "ENABLED" if job.mode == "ENABLE" else "DISABLED"
        self.recurring[job.recurring_run_id] = job
        return job

    def _get_recurring_run(self, query: dict, body: Any, job_id: str) -> Any:
        if job_id not in self.recurring:
            raise _Refused(404, f"NotFound: recurring run {job_id}")
        return self.recurring[job_id]

    def _parse(self, body: Any, model: str) -> Any:
        if not isinstance(body, dict):
            raise _Refused(400, f"InvalidArgument: expected a JSON {model}")
        return self._api.deserialize(_Raw(json.dumps(body).encode()), model)

    # -- HTTP ---------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                record = Recorded(self.command, parts.path, query, {k.lower(): v for k, v in self.headers.items()})
                try:
                    record.body = _body(self.headers.get("Content-Type", ""), raw)
                    with server._lock:
                        server.requests.append(record)
                        if server.fail_with:
                            raise _Refused(server.fail_with, f"the test server answers {server.fail_with}")
                        if server.token is not None and record.headers.get("authorization") != f"Bearer {server.token}":
                            raise _Refused(401, "Unauthenticated: missing or invalid bearer token")
                        answer = server._route(self.command, parts.path, query, record.body)
                    status, payload = 200, server._api.sanitize_for_serialization(answer)
                except _Refused as refused:
                    status = refused.status
                    payload = {"error": refused.message, "code": _GRPC_CODES.get(status, 2), "message": refused.message}
                record.status = status
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

        return Handler


def _body(content_type: str, raw: bytes) -> Any:
    if not raw:
        return None
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        return {
            part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
            for part in message.iter_parts()
        }
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise _Refused(400, f"InvalidArgument: the body is not JSON: {exc}") from exc
