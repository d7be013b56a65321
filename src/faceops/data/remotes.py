"""DVC remotes from the settings: an offline folder remote (the default) and an S3 remote (dvc-s3 / boto3).

``local``
    ``Settings.dvc_local_remote`` (default ``.dvc-storage/`` in the repository, git-ignored): works offline
    and is what ``make run`` pushes to.
``s3``
    ``s3://<s3_bucket>/<s3_prefix>`` at ``s3_endpoint_url`` (AWS when unset; MinIO, moto, ...). The URL goes
    in ``.dvc/config`` (committed), the endpoint and timeouts in ``.dvc/config.local`` (this machine only),
    and the credentials are never written anywhere: they reach DVC as ``AWS_*`` variables of its process.

Push and pull only add objects: nothing is ever deleted from a remote or the cache, so a push that fails half
way (an unreachable endpoint, a full disk) loses nothing that was stored before; running it again completes
it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faceops.data.versioning import DATA_DIR, dvc
from faceops.errors import ConfigError, RemoteUnavailable, VersioningError
from faceops.settings import Settings, get_settings

__all__ = ["KNOWN_REMOTES", "URL_REMOTE", "configure_remote", "pull", "push", "remote_env", "remote_status"]

KNOWN_REMOTES = ("local", "s3")
URL_REMOTE = "faceops"  # the name a remote given by its URL gets in .dvc/config.local


def remote_env(settings: Settings | None = None) -> dict[str, str]:
    """Environment variables that give DVC's S3 client the configured credentials."""
    settings = settings or get_settings()
    env = {}
    if settings.s3_access_key_id is not None:
        env["AWS_ACCESS_KEY_ID"] = settings.s3_access_key_id.get_secret_value()
    if settings.s3_secret_access_key is not None:
        env["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_access_key.get_secret_value()
    if settings.s3_region:
        env["AWS_DEFAULT_REGION"] = settings.s3_region
    return env


def _edit_config(root: Path, level: str, name: str, options: dict[str, str], default: bool = False) -> None:
    """Write remote ``name`` into ``.dvc/config`` (level ``repo``) or ``.dvc/config.local`` (``local``)."""
    from dvc.config import Config
    from dvc.config import ConfigError as DvcConfigError

    try:
        with Config(dvc_dir=str(root / ".dvc")).edit(level) as conf:
            section = {} if level == "repo" else dict(conf["remote"].get(name, {}))
            conf["remote"][name] = {**section, **options}
            if default:
                conf["core"]["remote"] = name
    except DvcConfigError as exc:
        raise ConfigError(f"cannot write DVC remote {name!r}: {exc}") from exc


def configure_remote(root: Path, name: str = "local", settings: Settings | None = None) -> str:
    """(Re)write remote ``name`` from the settings; a URL (``s3://...``, ``file://...``, an absolute folder)
    becomes remote :data:`URL_REMOTE`; other names must already be in ``.dvc/config``.

    Returns:
        The remote's URL.
    """
    settings = settings or get_settings()
    if not (root / ".dvc").is_dir():
        raise VersioningError(
            f"{root} is not a DVC repository: import a dataset first ('faceops data import')"
        )
    if name == "local":
        folder = (
            settings.dvc_local_remote
            if settings.dvc_local_remote.is_absolute()
            else root / settings.dvc_local_remote
        )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RemoteUnavailable(f"local DVC remote {folder} cannot be used as a folder ({exc})") from exc
        # DVC stores a path inside the repository relative to .dvc/, so the config works in any clone.
        url: str = str(folder)
        if folder.resolve().is_relative_to(root):
            from dvc.config_schema import RelPath

            url = RelPath(url)  # written as "../.dvc-storage"
        _edit_config(root, "repo", name, {"url": url}, default=True)
        return str(folder)
    if _is_url(name):
        return _configure_url(root, name, settings)
    if name == "s3":
        if not settings.s3_bucket:
            raise ConfigError(
                "the S3 remote needs a bucket: set FACEOPS_S3_BUCKET (and FACEOPS_S3_ENDPOINT_URL "
                "for a non-AWS endpoint)"
            )
        url = f"s3://{settings.s3_bucket}/{settings.s3_prefix.strip('/')}".rstrip("/")
        _edit_config(root, "repo", name, {"url": url})
        local = {"connect_timeout": str(settings.s3_timeout_s), "read_timeout": str(settings.s3_timeout_s)}
        if settings.s3_endpoint_url:
            local["endpointurl"] = settings.s3_endpoint_url
        if settings.s3_region:
            local["region"] = settings.s3_region
        _edit_config(root, "local", name, local)
        return url
    known = _remote_names(root)
    if name not in known:
        raise ConfigError(
            f"unknown DVC remote {name!r}: use one of {KNOWN_REMOTES} or add it with 'dvc remote add'"
        )
    return known[name]


def _is_url(remote: str) -> bool:
    return "://" in remote or Path(remote).is_absolute()


def _configure_url(root: Path, url: str, settings: Settings) -> str:
    """Remote :data:`URL_REMOTE` at ``url`` (``s3://bucket/prefix``, ``file:///folder`` or an absolute folder),
    written to ``.dvc/config.local``: a URL given at run time (a pipeline parameter, ``FACEOPS_DVC_REMOTE``)
    belongs to this machine, not to the repository's history. The endpoint comes from the environment."""
    from faceops.storage import s3_endpoint

    if url.startswith("file://"):
        url = url[len("file://") :]
    options = {"url": url}
    if url.startswith("s3://"):
        options.update(connect_timeout=str(settings.s3_timeout_s), read_timeout=str(settings.s3_timeout_s))
        endpoint = settings.s3_endpoint_url or s3_endpoint()
        if endpoint:
            options["endpointurl"] = endpoint
        if settings.s3_region:
            options["region"] = settings.s3_region
    else:
        try:
            Path(url).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RemoteUnavailable(f"DVC remote folder {url} cannot be used ({exc})") from exc
    _edit_config(root, "local", URL_REMOTE, options)
    return url


def _remote_names(root: Path) -> dict[str, str]:
    from dvc.config import Config

    remotes = Config(dvc_dir=str(root / ".dvc")).get("remote", {})
    return {name: str(section.get("url")) for name, section in remotes.items()}


def _transfer(
    root: Path, verb: str, remote: str, settings: Settings | None, extra: tuple[str, ...] = ()
) -> str:
    url = configure_remote(root, remote, settings)
    name = URL_REMOTE if _is_url(remote) else remote
    if not (root / f"{DATA_DIR}.dvc").is_file():
        raise VersioningError(f"{root} has no {DATA_DIR}.dvc: import a dataset first ('faceops data import')")
    try:
        return dvc(root, verb, "-r", name, *extra, f"{DATA_DIR}.dvc", env=remote_env(settings))
    except VersioningError as exc:
        raise RemoteUnavailable(
            f"{verb} to/from remote {remote!r} ({url}) failed; nothing stored before was "
            f"lost, run it again once the remote is reachable.\n{exc}"
        ) from exc


def push(root: Path, remote: str = "local", settings: Settings | None = None) -> str:
    """Upload the current data version's objects that ``remote`` lacks."""
    return _transfer(root, "push", remote, settings)


def pull(root: Path, remote: str = "local", settings: Settings | None = None) -> str:
    """Download the current data version from ``remote`` into the cache and ``data/``."""
    return _transfer(root, "pull", remote, settings, ("--force",))


def remote_status(root: Path, remote: str = "local", settings: Settings | None = None) -> dict[str, Any]:
    """``dvc status -c``: objects of the current version missing on ``remote`` (empty: in sync)."""
    out = _transfer(root, "status", remote, settings, ("--cloud", "--json"))
    return json.loads(out or "{}")
