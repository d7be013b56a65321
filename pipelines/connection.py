"""Where the Kubeflow Pipelines API is and who calls it (:class:`KfpConnection`), and what its failures mean.

The host defaults to ``KF_PIPELINES_ENDPOINT``, the namespace (a Kubeflow profile of a multi-user install) to
``KF_PIPELINES_NAMESPACE``. Credentials are resolved in this order: a bearer token (``token``, default
``FACEOPS_KFP_TOKEN``; ``kfp.Client(existing_token=...)``), a token file re-read before every call
(``token_path``, default ``KF_PIPELINES_SA_TOKEN_PATH``, then the projected service-account token at
``/var/run/secrets/kubeflow/pipelines/token`` when a pod has one; ``kfp.client.ServiceAccountTokenVolumeCredentials``),
else none. A namespace without any credential is refused before any call (a multi-user Kubeflow answers 401/403
to anonymous calls), unless ``auth='none'`` says the server needs none.

:func:`mapped` turns a failed call into a :mod:`faceops.errors` error naming the host, the namespace and the
call: no answer (:class:`~faceops.errors.PipelineUnavailable`), 401, 403, 404, 5xx
(:class:`~faceops.errors.PipelineError`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from faceops.errors import ConfigError, PipelineError, PipelineUnavailable

__all__ = [
    "ENDPOINT_ENV",
    "NAMESPACE_ENV",
    "SA_TOKEN_ENV",
    "SA_TOKEN_PATH",
    "TOKEN_ENV",
    "KfpConnection",
    "is_connection_problem",
    "mapped",
]

TOKEN_ENV = "FACEOPS_KFP_TOKEN"
ENDPOINT_ENV = "KF_PIPELINES_ENDPOINT"  # read by kfp.Client too
NAMESPACE_ENV = "KF_PIPELINES_NAMESPACE"  # FaceOps' own (kfp has none): set by the manifests' endpoints
SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # read by kfp's ServiceAccountTokenVolumeCredentials too
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
_CONNECTION_ERRORS = frozenset(
    {
        "MaxRetryError",
        "NewConnectionError",
        "ConnectionError",
        "ConnectionRefusedError",
        "ProtocolError",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "RemoteDisconnected",
        "SSLError",
        "socket.gaierror",
        "gaierror",
        "TimeoutError",
    }
)


@dataclass(frozen=True)
class KfpConnection:
    """Where the Kubeflow Pipelines API is and who calls it.

    Attributes:
        host: the API's URL (``http://ml-pipeline.kubeflow:8888`` in the cluster, a port-forward or the
            Kubeflow gateway outside); ``None``: ``KF_PIPELINES_ENDPOINT``.
        namespace: the Kubeflow profile namespace of a multi-user install; ``None``: ``KF_PIPELINES_NAMESPACE``,
            else single-user; ``''``: single-user.
        token: a bearer token; ``None``: ``FACEOPS_KFP_TOKEN``.
        token_path: a file holding a token, re-read before each call (a projected service-account token);
            ``None``: ``KF_PIPELINES_SA_TOKEN_PATH``, else the standard projected path when it exists.
        auth: ``'auto'`` (the above, a namespace needs one of them) or ``'none'`` (send no credentials).
        verify_ssl: verify the server's TLS certificate (``None``: kfp's default, yes).
        ssl_ca_cert: a CA bundle for the server's certificate.
    """

    host: str | None = None
    namespace: str | None = None
    token: str | None = None
    token_path: str | Path | None = None
    auth: Literal["auto", "none"] = "auto"
    verify_ssl: bool | None = None
    ssl_ca_cert: str | None = None

    def resolved_host(self) -> str:
        host = self.host or os.environ.get(ENDPOINT_ENV)
        if not host:
            raise ConfigError(
                f"no Kubeflow Pipelines host: give --host (trigger.host) or set {ENDPOINT_ENV}, e.g. "
                "http://ml-pipeline.kubeflow:8888 inside the cluster"
            )
        if not host.startswith(("http://", "https://")):
            raise ConfigError(f"Kubeflow Pipelines host {host!r} must start with http:// or https://")
        return host.rstrip("/")

    def resolved_namespace(self) -> str | None:
        namespace = os.environ.get(NAMESPACE_ENV) if self.namespace is None else self.namespace
        return namespace or None

    def where(self) -> str:
        """'Kubeflow Pipelines at <host> (namespace <ns>)', for messages."""
        host = self.host or os.environ.get(ENDPOINT_ENV) or "?"
        namespace = self.resolved_namespace()
        space = f"namespace {namespace}" if namespace else "no namespace: single-user"
        return f"Kubeflow Pipelines at {host.rstrip('/')} ({space})"

    def credentials(self) -> tuple[str, str | None]:
        """``('token', token)``, ``('token_path', path)`` or ``('none', None)``; refuses what cannot work."""
        if self.auth == "none":
            return "none", None
        token = self.token or os.environ.get(TOKEN_ENV)
        if token:
            return "token", token.strip()
        path = self.token_path or os.environ.get(SA_TOKEN_ENV)
        if path:
            source = "token_path" if self.token_path else SA_TOKEN_ENV
            try:
                content = Path(path).read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"{self.where()}: cannot read the token file {path} ({source}): {exc.strerror or exc}; "
                    "mount the projected service-account token (audience pipelines.kubeflow.org) there"
                ) from exc
            if not content:
                raise ConfigError(f"{self.where()}: the token file {path} ({source}) is empty")
            return "token_path", str(path)
        if Path(SA_TOKEN_PATH).is_file():
            return "token_path", SA_TOKEN_PATH
        if self.resolved_namespace():
            raise ConfigError(
                f"{self.where()}: no credentials for namespace {self.resolved_namespace()}: set {TOKEN_ENV} to a bearer "
                f"token, give a token file (token_path / {SA_TOKEN_ENV}; in a pod: a projected "
                f"service-account token with audience pipelines.kubeflow.org at {SA_TOKEN_PATH}), or "
                "auth: none for a server without authentication"
            )
        return "none", None


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what it was raised from (at most 10 links)."""
    seen = 0
    while exc is not None and seen < 10:
        yield exc
        exc = exc.__cause__ or exc.__context__
        seen += 1


def is_connection_problem(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) means nothing answered: refused, unresolvable, timed out."""
    from kfp_server_api import ApiException

    for link in _chain(exc):
        if type(link).__name__ in _CONNECTION_ERRORS:
            return True
        if isinstance(link, ApiException) and link.status in (0, 502, 503, 504):
            return True
    return False


def _server_message(body: Any) -> str:
    """The message of a KFP (grpc-gateway) error body ``{"error", "code", "message"}``, shortened."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    if isinstance(data, dict):
        text = str(data.get("message") or data.get("error") or data)
    return " ".join(text.split())[:300]


def mapped(connection: KfpConnection, auth: str, action: str, exc: BaseException) -> PipelineError:
    """The FaceOps error for a failure of ``action``: it names the host, the namespace and the refusal."""
    from kfp_server_api import ApiException

    where = connection.where()
    if is_connection_problem(exc):
        return PipelineUnavailable(
            f"cannot reach Kubeflow Pipelines at {connection.host or os.environ.get(ENDPOINT_ENV)} while "
            f"{action} ({type(exc).__name__}: {str(exc)[:200]}); check the URL (e.g. kubectl port-forward "
            "svc/ml-pipeline 8888:8888 -n kubeflow)"
        )
    api = next((e for e in _chain(exc) if isinstance(e, ApiException)), None)
    if api is None:
        return PipelineError(f"{where} failed while {action}: {type(exc).__name__}: {str(exc)[:300]}")
    status, detail = api.status, _server_message(api.body)
    if status == 401:
        hint = (
            f"the server wants credentials and none were sent: set {TOKEN_ENV} or a token file ({SA_TOKEN_ENV})"
            if auth == "none"
            else f"the bearer token ({'token' if auth == 'token' else 'token file'}) was refused: check that it "
            "is valid for this server and not expired"
        )
        return PipelineError(f"{where} answered 401 Unauthorized while {action}: {hint} ({detail})")
    if status == 403:
        who = f"namespace {connection.resolved_namespace()}" if connection.resolved_namespace() else "this server"
        return PipelineError(
            f"{where} answered 403 Forbidden while {action}: the caller may not do this in {who} (a "
            f"Kubeflow profile contributor binding for the service account is missing?) ({detail})"
        )
    if status == 404:
        return PipelineError(
            f"{where} answered 404 Not Found while {action}: no Kubeflow Pipelines v2beta1 API at this URL "
            f"(the API, e.g. http://ml-pipeline.kubeflow:8888, not the UI's address), or no such object "
            f"({detail})"
        )
    if status is not None and status >= 500:
        return PipelineError(f"{where} failed with HTTP {status} {api.reason or ''} while {action}: {detail}")
    return PipelineError(f"{where} refused {action} with HTTP {status} {api.reason or ''}: {detail}")
