"""What a pipeline step shares with the others: a data version by reference, caches in the object store, MLflow.

In a cluster every step is a pod with an empty file system, so a step reads nothing another step wrote to a
host path. The ``data-version`` step pushes the data to the DVC remote and hands on a :class:`DataRef` (the
pointer ``data.dvc`` and the remote's URL) in its ``Dataset`` artifact; every later step fetches the files it
needs into its own scratch cache (:func:`faceops.data.fetch.checkout_version`). Crops and trunk activations
live in the object store under the same names as in a local cache (``crops-<crop fingerprint>/``,
``trunk-<cut>-<trunk id>-<fingerprint>/``, files named uniquely and never rewritten): a step copies down those
of its fingerprint before it works and copies up what it added after (:func:`step_inputs`).

Where things are, when a pipeline parameter leaves it empty, comes from the environment a cluster sets from
its ConfigMap and Secrets: ``FACEOPS_DVC_REMOTE`` (the DVC remote), ``FACEOPS_STORE`` (the cache store),
``MLFLOW_TRACKING_URI``; the scratch cache is ``FACEOPS_CACHE_DIR`` (default ``outputs/cache`` in the working
directory). On ``make run`` the store *is* the local cache folder, so syncing costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceops.errors import ConfigError, TrackingUnavailable, VersioningError

__all__ = [
    "DataRef",
    "StepInputs",
    "checkout",
    "data_info",
    "data_version_step",
    "scratch_dir",
    "step_inputs",
    "tracking_uri",
]


def scratch_dir() -> Path:
    """The step's own cache folder (``FACEOPS_CACHE_DIR``)."""
    from faceops.settings import get_settings

    path = get_settings().cache_dir.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class DataRef:
    """A data version by reference: its DVC pointer (``data.dvc`` text) and the DVC remote that holds it."""

    pointer: str
    remote: str

    @classmethod
    def from_artifact(cls, folder: str | Path) -> DataRef:
        """The reference the ``data-version`` step wrote into its ``Dataset`` artifact folder."""
        folder = Path(folder)
        try:
            version = json.loads((folder / "version.json").read_text())
            return cls((folder / "data.dvc").read_text(), str(version["remote_url"]))
        except (OSError, ValueError, KeyError) as exc:
            raise VersioningError(f"{folder} is not a data-version artifact (data.dvc + version.json): {exc}") from exc

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataRef:
        try:
            return cls(str(values["pointer"]), str(values["remote"]))
        except KeyError as exc:
            raise ConfigError(f"a data reference needs 'pointer' and 'remote', not {sorted(values)}") from exc

    def to_dict(self) -> dict[str, str]:
        return {"pointer": self.pointer, "remote": self.remote}

    def checkout(self, cache_dir: Path, select: Any = None) -> Path:
        from faceops.data.fetch import checkout_version

        return checkout_version(self.pointer, self.remote, cache_dir, select)


# --- the data-version step ------------------------------------------------------------------------------


def _is_git_url(repo: str) -> bool:
    return "://" in repo or repo.startswith("git@") or repo.endswith(".git")


def _work_repo(repo: str, scratch: Path) -> Path:
    """The repository to work in: ``repo`` itself, a fresh one (``repo`` empty: a pod importing a source), or
    a clone of the git URL ``repo`` (a pod restoring a DVC revision)."""
    if repo and not _is_git_url(repo):
        return Path(repo)
    work = Path(tempfile.mkdtemp(prefix="repo-", dir=scratch))
    command = ["git", "clone", "--quiet", repo, str(work)] if repo else ["git", "init", "--quiet", str(work)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise VersioningError(f"{' '.join(command[:2])} {repo or work} failed: {done.stderr.strip()[-500:]}")
    return work


def data_version_step(
    repo: str,
    source: str,
    version: str,
    identities_file: str,
    min_images: int,
    remote: str,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Make the data version (import ``source`` or restore ``version``), push it to the DVC remote and write
    the reference to it into ``out_dir``: ``data.dvc``, ``manifest.csv``, ``version.json``.

    Args:
        repo: the git + DVC repository (a folder), a git URL to clone, or empty: with ``source``, a fresh
            repository (a one-off import whose data lives on in the remote); without, ``$FACEOPS_DATA_REPO``
            (the git URL of the data repository whose ``data.dvc`` history names the versions).
        remote: a DVC remote name of the repository, or its URL; empty: ``$FACEOPS_DVC_REMOTE``.

    Returns:
        :func:`faceops.steps.data.data_version_info` of the version, with ``remote_url``.
    """
    from faceops.data.remotes import configure_remote
    from faceops.data.versioning import pointer_path
    from faceops.settings import get_settings
    from faceops.steps.data import prepare_data
    from faceops.storage import resolve

    remote = resolve(
        remote or get_settings().dvc_remote or "", "FACEOPS_DVC_REMOTE", "DVC remote (where steps fetch the data version from)"
    )
    if not repo and not source:  # restoring a version needs its history: the data repository
        repo = os.environ.get("FACEOPS_DATA_REPO", "")
        if not repo:
            raise ConfigError(
                "no data repository: give the pipeline's 'repo' parameter (a git URL) or set FACEOPS_DATA_REPO "
                "(e.g. in the faceops-endpoints ConfigMap), or import a 'source'"
            )
    root = _work_repo(repo, scratch_dir())
    info = prepare_data(root, source, version, identities_file, min_images, remote=remote)
    url = configure_remote(Path(info["data_dir"]).parent, remote)
    info["remote_url"] = url
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pointer_path(Path(info["data_dir"]).parent), out / "data.dvc")
    shutil.copyfile(Path(info["data_dir"]) / "manifest.csv", out / "manifest.csv")
    (out / "version.json").write_text(json.dumps(info, indent=2))
    if not repo or _is_git_url(repo):  # a throw-away repository: its data now lives in the remote
        shutil.rmtree(root, ignore_errors=True)
    return info


# --- the later steps: data by reference, caches in the store ---------------------------------------------


@dataclass(frozen=True)
class StepInputs:
    """Where a step finds its data version and its caches."""

    data_dir: Path
    cache_dir: Path


def _cache_names(names: list[str], crops: str, fingerprint: str, trunk: bool) -> list[str]:
    tops = {n.split("/", 1)[0] for n in names}
    wanted = {f"crops-{crops}"}
    if trunk:
        wanted |= {t for t in tops if t.startswith("trunk-") and t.endswith(f"-{fingerprint}")}
    return sorted(wanted)


@contextlib.contextmanager
def step_inputs(
    data: str | Path | dict[str, Any],
    store: str,
    run_config: dict[str, Any] | None,
    *,
    shard: tuple[int, int] | None = None,
    trunk: bool = True,
) -> Iterator[StepInputs]:
    """The data version and the caches of a step, fetched into its scratch cache; new cache files go back to
    the store when the step's body succeeded.

    Args:
        data: the ``data-version`` artifact folder, or a :class:`DataRef` as a dict (a loop item).
        store: the cache store URI; empty: ``$FACEOPS_STORE``.
        run_config: the run config (its preprocessing fingerprint names the caches).
        shard: ``(shard, shards)``: fetch only that shard's images.
        trunk: also sync the trunk-activation caches (not needed by preprocessing).
    """
    from faceops.steps.data import _preprocess_config, shard_of
    from faceops.storage import open_store, resolve, sync_down, sync_up

    ref = DataRef.from_dict(data) if isinstance(data, dict) else DataRef.from_artifact(data)
    scratch = scratch_dir()
    from faceops.settings import get_settings

    cache_store = open_store(resolve(store or get_settings().store or "", "FACEOPS_STORE", "cache store (where steps share crops)"))
    preprocess = _preprocess_config(run_config)
    fingerprint, crops = preprocess.fingerprint(), preprocess.crop_fingerprint()
    select = None
    if shard is not None:
        index, count = shard
        select = lambda rows: [r for r in rows if shard_of(r.sha256, count) == index]  # noqa: E731
    data_dir = ref.checkout(scratch, select)
    same = cache_store.same_folder(scratch)
    names = [] if same else _cache_names(list(cache_store.listing()), crops, fingerprint, trunk)
    sync_down(cache_store, scratch, names)
    yield StepInputs(data_dir, scratch)
    if not same:
        local = [p.name for p in scratch.iterdir() if p.is_dir()]
        sync_up(scratch, cache_store, _cache_names(local, crops, fingerprint, trunk))


def tracking_uri(value: str) -> str:
    """The MLflow tracking URI of a step: ``value``, else ``$MLFLOW_TRACKING_URI`` (a cluster's ConfigMap), else
    ``$FACEOPS_MLFLOW_TRACKING_URI``; an HTTP server must answer its health check now, before anything is
    logged, so a step never leaves half a registration behind an unreachable server.

    Raises:
        ConfigError: none is set (a pod would otherwise write to a SQLite file that dies with it);
        TrackingUnavailable: the server does not answer.
    """
    uri = value or os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("FACEOPS_MLFLOW_TRACKING_URI") or ""
    if not uri:
        raise ConfigError(
            "no MLflow tracking URI: pass tracking_uri or set MLFLOW_TRACKING_URI (on a cluster, from the ConfigMap faceops-endpoints)"
        )
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            answer = requests.get(uri.rstrip("/") + "/health", timeout=10)
        except requests.RequestException as exc:
            raise TrackingUnavailable(
                f"cannot reach the MLflow tracking server {uri} ({type(exc).__name__}); check MLFLOW_TRACKING_URI "
                "and that the server is up"
            ) from exc
        if answer.status_code >= 500:
            raise TrackingUnavailable(f"the MLflow tracking server {uri} answers {answer.status_code} to /health")
    return uri


def checkout(data: str | Path | dict[str, Any]) -> Path:
    """The data folder of a step that needs no cache (validation): fetched into its scratch cache."""
    ref = DataRef.from_dict(data) if isinstance(data, dict) else DataRef.from_artifact(data)
    return ref.checkout(scratch_dir())


def data_info(folder: str | Path) -> dict[str, Any]:
    """What the ``data-version`` step recorded about the version (``version.json`` of its artifact)."""
    try:
        return dict(json.loads((Path(folder) / "version.json").read_text()))
    except (OSError, ValueError) as exc:
        raise VersioningError(f"{folder} is not a data-version artifact (no readable version.json): {exc}") from exc
