"""Compile, run locally (``kfp.local``) and submit (``kfp.Client``) the pipelines; the retraining trigger.

Importing this module has no side effect and imports no kfp: each function imports it when called. Local runs
use ``kfp.local.SubprocessRunner(use_venv=False)``: every step is a process of this Python environment,
outputs go under ``pipeline_root`` and kfp.local's cache (``<pipeline_root>/.kfp_cache``) lets a second run
reuse every step whose inputs did not change (the data version's DVC md5 is one of them). What the steps and
kfp print goes to ``<pipeline_root>/logs/run-<time>.log``; the terminal gets one line per step and progress
bars (:mod:`faceops.kfp.pipelines.watch`), or everything with ``verbose``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path
from typing import Any, TextIO

from faceops.errors import ConfigError, PipelineError, PipelineUnavailable

__all__ = [
    "compile_pipelines",
    "local_arguments",
    "pipeline_func",
    "run_local",
    "submit",
    "trigger_retraining",
]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# What kfp.local says about the cluster settings (faceops.kfp.pipelines.platform) it ignores: resource requests,
# and the image given as a pipeline parameter (SubprocessRunner uses this Python whatever the image).
_LOCAL_NOOPS = (
    r"Task '[\w-]+': settings \[[^]]*\] have no effect in the current local runner",
    r"You may be attemping to run a task that uses custom or non-Python base image",
)


def pipeline_func(
    name: str, image: str | None = None, cache_pvc: str | None = None, *, retries: bool = True
) -> Any:
    """The ``@dsl.pipeline`` function of pipeline ``name`` ('training' or 'retraining'): ``image`` is the default
    of its ``image`` parameter, ``cache_pvc`` a PersistentVolumeClaim each step mounts as its scratch cache,
    ``retries`` whether network steps are retried (the cluster's settings: :mod:`faceops.kfp.pipelines.platform`)."""
    from faceops.kfp.components.image import IMAGE
    from faceops.kfp.pipelines import PIPELINES

    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}: use one of {sorted(PIPELINES)}")
    try:
        module, factory = PIPELINES[name].split(":")
        return getattr(import_module(module), factory)(image or IMAGE, cache_pvc, retries)
    except ImportError as exc:
        raise PipelineUnavailable(f"cannot build pipeline {name!r}: {exc} (install faceops[mlops])") from exc


def compile_pipelines(
    out_dir: str | Path, names: list[str] | None = None, image: str | None = None, cache_pvc: str | None = None
) -> dict[str, Path]:
    """Compile pipelines to ``<out_dir>/<name>.yaml`` (the file the Kubeflow UI uploads); see
    :func:`pipeline_func` for ``image`` and ``cache_pvc``."""
    from faceops.kfp.pipelines import PIPELINES
    from kfp import compiler

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in names or list(PIPELINES):
        path = out / f"{name}.yaml"
        compiler.Compiler().compile(pipeline_func(name, image, cache_pvc), package_path=str(path))
        written[name] = path
    return written


def _sqlite_absolute(uri: str) -> str:
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def local_arguments(repo: str | Path = ".", **overrides: Any) -> dict[str, Any]:
    """The embedded defaults of a local run, as absolute paths: the repository, the settings' MLflow store, the
    local DVC remote, and this machine's cache folder as the cache store (so the steps' syncing is a no-op);
    ``overrides`` replace any of them (unknown names are refused by the run)."""
    from faceops.settings import get_settings

    settings = get_settings()
    root = Path(repo).resolve()
    defaults = {
        "repo": str(root),
        "remote": "local",
        "tracking_uri": _sqlite_absolute(settings.mlflow_tracking_uri),
        "store": str(settings.cache_dir.resolve()),
        "status_dir": str((settings.output_dir / "pipeline").resolve()),
    }
    return {**defaults, **{k: v for k, v in overrides.items() if v is not None}}


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the steps (child processes inherit them), restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _without_none(value: Any) -> Any:
    """``value`` with the None entries of dicts dropped: pipeline parameters cannot hold None."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _step_error(log: str) -> str | None:
    """The last exception line a step printed (``faceops.errors.X: message`` and what follows it)."""
    lines = [line.strip() for line in log.splitlines()]
    for i in range(len(lines) - 1, -1, -1):
        match = re.match(
            r"^(?:[\w.]+\.)?([A-Z]\w*(?:Error|Failed|Exception|NotFound|Unavailable)): (.*)$", lines[i]
        )
        if match:
            tail = [x for x in lines[i + 1 : i + 12] if x and not x.startswith(("[KFP", "--", "Traceback"))]
            tail = [x for x in tail if not re.match(r"^\d\d:\d\d:\d\d", x)]
            return f"{match.group(1)}: {match.group(2)}" + ("\n" + "\n".join(tail) if tail else "")
    return None


def _run_dirs(pipeline_root: Path, prefix: str, since: float) -> list[Path]:
    return sorted(
        p for p in pipeline_root.glob(f"{prefix}-*") if p.is_dir() and p.stat().st_mtime >= since - 1
    )


def run_local(
    name: str,
    arguments: dict[str, Any] | None = None,
    *,
    pipeline_root: str | Path | None = None,
    caching: bool = True,
    env: dict[str, str] | None = None,
    console: TextIO | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Run pipeline ``name`` with ``kfp.local`` (SubprocessRunner, this environment) and wait for it.

    Everything kfp and the steps print goes to ``<pipeline_root>/logs/run-<time>.log``; ``console`` (default:
    ``sys.stdout``) gets the log's path, one line per step as it ends, progress bars of the long steps and,
    when a step fails, the last lines it printed. ``verbose`` shows the whole log on ``console`` instead.

    Returns:
        ``run_id`` (the run's folder under ``pipeline_root``), ``status``, ``backend``, ``executed`` (the
        steps that ran), ``steps`` (each step's name, status and seconds), ``log`` and ``pipeline_root``.

    Raises:
        PipelineError: a step failed; the message names it, quotes its error and gives the log's path.
    """
    try:
        from kfp import local
    except ImportError as exc:
        raise PipelineUnavailable(f"kfp is not installed ({exc}): pip install 'faceops[mlops]'") from exc
    from faceops.kfp.components._io import PROGRESS_ENV
    from faceops.kfp.pipelines.console import Console
    from faceops.kfp.pipelines.watch import watch_run

    from faceops.settings import get_settings

    root = Path(pipeline_root or get_settings().output_dir / "pipeline" / "runs").resolve()
    root.mkdir(parents=True, exist_ok=True)
    func = pipeline_func(name, retries=False)  # kfp.local would retry a failed step after 30 s, then 60 s
    known = set(func.component_spec.inputs or {})
    unknown = sorted(set(arguments or {}) - known)
    if unknown:
        raise ConfigError(f"pipeline {name!r} has no parameter(s) {unknown}; it takes {sorted(known)}")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        raise_on_error=True,
        enable_caching=caching,
    )
    started = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    log_path = root / "logs" / f"run-{stamp}.log"
    progress_dir = root / "logs" / f"progress-{stamp}"
    out = console or sys.stdout
    out.write(f"{func.name}: running on kfp.local; full log: {log_path}\n")
    out.flush()
    settings = get_settings()
    step_env = {
        "FACEOPS_MLFLOW_ARTIFACTS": str(settings.mlflow_artifacts.resolve()),
        PROGRESS_ENV: str(progress_dir),
        **(env or {}),
    }
    watcher = watch_run(
        log_path,
        func.pipeline_spec,
        None if verbose else Console(out),
        echo=out if verbose else None,
        progress_dir=progress_dir,
    )
    try:
        with watcher as watch, _environment(step_env), warnings.catch_warnings():
            for message in _LOCAL_NOOPS:
                warnings.filterwarnings("ignore", message)
            func(**_without_none(arguments or {}))
    except RuntimeError as exc:
        message = _ANSI.sub("", str(exc))
        failed = re.findall(r"Inner task failed: '([\w-]+)'", message) or re.findall(r"'([\w-]+)'", message)
        step = watch.failed[0] if watch.failed else (failed[0] if failed else "?")
        label = watch.failed_labels[0] if watch.failed_labels else step
        cause = _step_error("\n".join(watch.log.tail(label, lines=400, quiet=False))) or _step_error(
            log_path.read_text(encoding="utf-8", errors="replace")
        )
        cause = cause or (watch.errors[-1] if watch.errors else "see the log")
        raise PipelineError(f"pipeline {func.name} failed at step {step!r}: {cause} (full log: {log_path})") from exc
    runs = _run_dirs(root, func.name, started)
    run_dir = runs[-1] if runs else root
    # kfp.local writes a folder with an executor output for each step it ran (not for those it reused).
    executed = sorted({p.parent.name for p in run_dir.rglob("executor_output.json")}) if runs else []
    return {
        "run_id": run_dir.name,
        "status": "SUCCEEDED",
        "backend": "local",
        "pipeline": func.name,
        "pipeline_root": str(root),
        "executed": executed,
        "steps": watch.steps,
        "log": str(log_path),
        "seconds": round(time.time() - started, 1),
    }


def submit(
    name: str,
    arguments: dict[str, Any] | None,
    host: str | None = None,
    *,
    image: str | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
    connection: Any = None,
    service_account: str | None = None,
    cache_pvc: str | None = None,
) -> dict[str, Any]:
    """Upload pipeline ``name`` to the Kubeflow Pipelines API and start a run (returns at once).

    Args:
        host, namespace: where, when no ``connection`` is given (credentials then come from the environment:
            ``FACEOPS_KFP_TOKEN``, ``KF_PIPELINES_SA_TOKEN_PATH``; see :mod:`faceops.kfp.pipelines.client`).
        connection: a :class:`~faceops.kfp.pipelines.client.KfpConnection` (host, namespace, credentials).
        experiment: the Kubeflow experiment (default: ``KF_PIPELINES_DEFAULT_EXPERIMENT_NAME``, else 'faceops').
        image, cache_pvc: compile options, as :func:`compile_pipelines`.

    Raises:
        PipelineUnavailable: no Kubeflow Pipelines API answers; PipelineError: the server refused a call
        (401, 403, 404, 5xx: the message names host, namespace and the call); ConfigError: no host, missing
        credentials, an argument the pipeline does not take.
    """
    from faceops.kfp.pipelines.client import KfpConnection, submit_pipeline

    connection = connection or KfpConnection(host=host, namespace=namespace)
    return submit_pipeline(
        name,
        _without_none(arguments or {}),
        connection,
        image=image,
        experiment=experiment,
        run_name=run_name,
        service_account=service_account,
        cache_pvc=cache_pvc,
    )


def trigger_retraining(
    reason: str,
    data_version: str | None = None,
    *,
    backend: str = "local",
    host: str | None = None,
    config: dict[str, Any] | None = None,
    connection: Any = None,
    experiment: str | None = None,
    service_account: str | None = None,
    cache_pvc: str | None = None,
) -> dict[str, Any]:
    """Start the retraining pipeline (the contract with monitoring).

    Args:
        reason: why (e.g. 'drift: share of drifted features 0.6 > 0.5'); recorded on the model version.
        data_version: a git revision of ``data.dvc``; None: the current data version.
        backend: 'local' (kfp.local, waits for the run) or 'kfp' (submits and returns at once).
        host: the Kubeflow Pipelines API URL (backend 'kfp', when no ``connection`` is given).
        config: pipeline arguments replacing the defaults (``repo``, ``run_config``, ``tracking_uri``, ...).
        connection: backend 'kfp': a :class:`~faceops.kfp.pipelines.client.KfpConnection` (host, namespace,
            credentials).
        experiment: backend 'kfp': the Kubeflow experiment of the run.
        service_account: backend 'kfp': the Kubernetes service account of the run's pods.
        cache_pvc: backend 'kfp': a PersistentVolumeClaim the steps mount as their scratch cache.

    Returns:
        ``run_id``, ``status`` ('SUCCEEDED' or 'SUBMITTED'), ``backend`` and backend-specific details (for
        'kfp': ``state``, ``host``, ``namespace``, ``experiment``, ``url``).

    Raises:
        PipelineUnavailable: the backend cannot be reached; PipelineError: the local run failed, or the KFP
        server refused the submission; ConfigError: a bad backend or argument, missing credentials.
    """
    if not reason or not reason.strip():
        raise ConfigError("a retraining needs a reason (it is recorded with the model)")
    arguments = {**(config or {}), "reason": reason, "data_version": data_version or ""}
    if backend == "local":
        overrides = {k: v for k, v in arguments.items() if k != "repo"}
        return run_local("retraining", local_arguments(arguments.get("repo", "."), **overrides))
    if backend == "kfp":
        if not host and connection is None:
            raise ConfigError("backend 'kfp' needs the host of the Kubeflow Pipelines API")
        return submit(
            "retraining",
            arguments,
            host,
            connection=connection,
            experiment=experiment,
            run_name=f"retraining: {reason[:60]}",
            service_account=service_account,
            cache_pvc=cache_pvc,
        )
    raise ConfigError(f"unknown backend {backend!r}: use 'local' or 'kfp'")
