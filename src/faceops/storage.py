"""The object store: one small adapter over a local folder and S3 (boto3), for what pipeline steps share.

A *store URI* is ``s3://bucket/prefix`` (S3 or an S3 API such as MinIO or moto), ``file:///abs/folder`` or a
plain folder path. Pipeline steps that run as separate pods share nothing but KFP artifacts, MLflow and such
stores: the DVC remote (:mod:`faceops.data.fetch` reads it by content hash), the preprocessing caches
(:func:`sync_down` / :func:`sync_up`) and, optionally, the embedding weights (:func:`fetch_file`).

S3 settings come from the environment, the way a Kubernetes Secret/ConfigMap sets them: the endpoint from
``FACEOPS_S3_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (unset: AWS itself); the credentials
from ``FACEOPS_S3_ACCESS_KEY_ID`` / ``FACEOPS_S3_SECRET_ACCESS_KEY`` or boto3's own chain (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, profiles, roles). Errors name what is missing: no credentials and a refused key are
:class:`~faceops.errors.ConfigError`, an endpoint that does not answer or a missing bucket is
:class:`~faceops.errors.RemoteUnavailable`. botocore's exceptions are mapped here and nowhere else.

Objects are immutable by convention (content-addressed or uniquely named), so copying is by name: a file that
is already there is not copied again, and every write is atomic (a temporary name, then a rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from faceops.errors import ConfigError, RemoteUnavailable

__all__ = ["Store", "fetch_file", "is_uri", "open_store", "resolve", "sha256_of", "sync_down", "sync_up"]

CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
ENDPOINT_VARS = ("FACEOPS_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


def resolve(value: str | None, env_var: str, what: str) -> str:
    """``value``, or (empty) the environment variable ``env_var``; neither: a :class:`ConfigError` naming both."""
    if value:
        return value
    found = os.environ.get(env_var, "").strip()
    if not found:
        raise ConfigError(f"no {what}: pass it as a pipeline parameter or set {env_var} (e.g. from a ConfigMap)")
    return found


def is_uri(value: str) -> bool:
    """Whether ``value`` names a remote object store (``s3://``), not a local path."""
    return urlparse(value).scheme.lower() == "s3"


def s3_endpoint() -> str | None:
    """The S3 API endpoint from the environment (None: AWS)."""
    for name in ENDPOINT_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return None


@dataclass(frozen=True)
class Store:
    """A folder of objects: ``root`` on this machine, or ``bucket``/``prefix`` in S3 (``client`` set)."""

    uri: str
    root: Path | None = None
    bucket: str = ""
    prefix: str = ""
    client: Any = None

    @property
    def local(self) -> bool:
        return self.root is not None

    def child(self, name: str) -> Store:
        """The store one level down (``name`` may hold slashes)."""
        name = name.strip("/")
        if self.root is not None:
            return Store(f"{self.uri.rstrip('/')}/{name}", root=self.root / name)
        prefix = f"{self.prefix}/{name}".strip("/")
        return Store(f"s3://{self.bucket}/{prefix}", bucket=self.bucket, prefix=prefix, client=self.client)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}".strip("/")

    def listing(self) -> dict[str, int]:
        """Relative name -> size of every object under the store (recursive)."""
        if self.root is not None:
            if not self.root.is_dir():
                return {}
            return {
                p.relative_to(self.root).as_posix(): p.stat().st_size
                for p in self.root.rglob("*")
                if p.is_file() and not p.name.endswith(".tmp")
            }
        out: dict[str, int] = {}
        base = f"{self.prefix}/" if self.prefix else ""
        with _s3_errors(self):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
            for page in pages:
                for obj in page.get("Contents", []):
                    out[obj["Key"][len(base) :]] = int(obj["Size"])
        return out

    def exists(self, name: str) -> bool:
        if self.root is not None:
            return (self.root / name).is_file()
        with _s3_errors(self, missing_ok=True) as missing:
            self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        return not missing

    def read_bytes(self, name: str) -> bytes:
        if self.root is not None:
            try:
                return (self.root / name).read_bytes()
            except FileNotFoundError as exc:
                raise RemoteUnavailable(f"{self.uri}: no object {name!r}") from exc
        with _s3_errors(self, name=name):
            return bytes(self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"].read())

    def get(self, name: str, dest: Path) -> Path:
        """Copy object ``name`` to ``dest`` (atomically; hard-linked when both are on this machine)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            if self.root is not None:
                src = self.root / name
                if not src.is_file():
                    raise RemoteUnavailable(f"{self.uri}: no object {name!r}")
                try:
                    os.link(src, tmp)
                except OSError:  # another file system, or links not allowed
                    shutil.copyfile(src, tmp)
            else:
                with _s3_errors(self, name=name):
                    self.client.download_file(self.bucket, self._key(name), str(tmp))
            tmp.replace(dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def put(self, src: Path, name: str) -> None:
        """Copy the file ``src`` to object ``name``."""
        if self.root is not None:
            dest = self.root / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
            shutil.copyfile(src, tmp)
            tmp.replace(dest)
            return
        with _s3_errors(self, name=name):
            self.client.upload_file(str(src), self.bucket, self._key(name))

    def same_folder(self, path: Path) -> bool:
        """Whether this store *is* the local folder ``path`` (then syncing with it is a no-op)."""
        return self.root is not None and self.root.resolve() == Path(path).resolve()


def open_store(uri: str) -> Store:
    """The :class:`Store` of ``uri`` (``s3://bucket/prefix``, ``file:///folder`` or a folder path).

    Raises:
        ConfigError: a malformed URI, or S3 without credentials (the message names the variables to set).
    """
    if not uri:
        raise ConfigError("empty store URI")
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("", "file"):
        path = Path(parsed.path if scheme == "file" else uri).expanduser()
        return Store(uri, root=path.resolve())
    if scheme != "s3":
        raise ConfigError(f"store {uri!r}: use s3://bucket/prefix, file:///folder or a folder path")
    if not parsed.netloc:
        raise ConfigError(f"store {uri!r} names no bucket (s3://bucket/prefix)")
    return Store(uri, bucket=parsed.netloc, prefix=parsed.path.strip("/"), client=_s3_client())


def _s3_client() -> Any:
    import boto3
    from botocore.config import Config

    from faceops.settings import get_settings

    settings = get_settings()
    key = settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None
    secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
    session = boto3.Session(
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=settings.s3_region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
    if session.get_credentials() is None:
        raise ConfigError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (on a cluster, from the "
            "Secret faceops-s3) or FACEOPS_S3_ACCESS_KEY_ID / FACEOPS_S3_SECRET_ACCESS_KEY"
        )
    timeout = settings.s3_timeout_s
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 3, "mode": "standard"})
    return session.client("s3", endpoint_url=settings.s3_endpoint_url or s3_endpoint(), config=config)


@contextlib.contextmanager
def _s3_errors(store: Store, name: str = "", missing_ok: bool = False) -> Iterator[list[bool]]:
    """Map botocore's exceptions to FaceOps errors naming the endpoint, bucket or credentials at fault."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    missing: list[bool] = []
    where = store.client.meta.endpoint_url if store.client is not None else "S3"
    try:
        yield missing
    except NoCredentialsError as exc:
        raise ConfigError(f"no S3 credentials for {store.uri}: set {' and '.join(CREDENTIAL_VARS)}") from exc
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise RemoteUnavailable(
            f"cannot reach the S3 endpoint {where} for {store.uri} ({exc}); check AWS_ENDPOINT_URL / "
            "FACEOPS_S3_ENDPOINT_URL and that the server is up"
        ) from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound") and missing_ok:
            missing.append(True)
            return
        if code in ("404", "NoSuchKey", "NotFound"):
            raise RemoteUnavailable(f"{store.uri}: no object {name!r} at {where}") from exc
        if code == "NoSuchBucket":
            raise RemoteUnavailable(f"{store.uri}: bucket {store.bucket!r} does not exist at {where}") from exc
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
            raise ConfigError(
                f"S3 at {where} refused the credentials for {store.uri} ({code}): check {' and '.join(CREDENTIAL_VARS)}"
            ) from exc
        raise RemoteUnavailable(f"S3 at {where} failed for {store.uri}: {code} {exc}") from exc


def sync_down(store: Store, folder: Path, names: list[str]) -> int:
    """Copy the objects of sub-folders ``names`` of ``store`` that ``folder`` lacks; returns how many."""
    if store.same_folder(folder):
        return 0
    copied = 0
    for name in names:
        sub = store.child(name)
        for rel in sub.listing():
            dest = folder / name / rel
            if not dest.is_file():
                sub.get(rel, dest)
                copied += 1
    return copied


def sync_up(folder: Path, store: Store, names: list[str]) -> int:
    """Copy the files of sub-folders ``names`` of ``folder`` that ``store`` lacks; returns how many."""
    if store.same_folder(folder):
        return 0
    copied = 0
    for name in names:
        local = folder / name
        if not local.is_dir():
            continue
        sub = store.child(name)
        there = sub.listing()
        for path in sorted(local.rglob("*")):
            rel = path.relative_to(local).as_posix()
            if path.is_file() and not path.name.endswith(".tmp") and rel not in there:
                sub.put(path, rel)
                copied += 1
    return copied


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write, which becomes ``path`` only once the block ends
    without an error (synced, renamed over it): the old file, if any, stays intact until then, and a failed write
    leaves no partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """:func:`atomic_path`, opened for writing."""
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        yield handle


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_file(uri: str, cache_dir: Path, sha256: str | None = None) -> Path:
    """The object ``s3://bucket/key`` as a local file, downloaded once into ``cache_dir``.

    The file is kept under a name derived from the URI; with ``sha256`` its content is checked (a mismatch is
    deleted and refused).
    """
    parsed = urlparse(uri)
    key = parsed.path.strip("/")
    if parsed.scheme.lower() != "s3" or not key or "/" not in f"{parsed.netloc}/{key}":
        raise ConfigError(f"{uri!r} is not an object URI (s3://bucket/key)")
    parent, _, name = key.rpartition("/")
    tag = hashlib.sha256(uri.encode()).hexdigest()[:12]
    dest = Path(cache_dir) / "downloads" / tag / name
    if not dest.is_file():
        base = f"s3://{parsed.netloc}/{parent}" if parent else f"s3://{parsed.netloc}"
        open_store(base).get(name, dest)
    if sha256 and sha256_of(dest) != sha256.lower():
        dest.unlink()
        raise ConfigError(f"{uri}: its sha256 differs from the expected {sha256[:12]}... (file refused)")
    return dest
