"""The S3 remote against a real S3 API server (moto's) on 127.0.0.1: push / pull, status -c, old versions."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceops.data.importer import import_dataset
from faceops.data.ingest import ImportFilters
from faceops.data.manifest import read_manifest
from faceops.data.remotes import pull, push, remote_env, remote_status
from faceops.data.versioning import restore_version, workspace_status
from faceops.errors import ConfigError, RemoteUnavailable
from faceops.settings import Settings

pytestmark = pytest.mark.integration
BUCKET = "faceops-data"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def settings(s3_endpoint: str, tmp_path: Path) -> Settings:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"{BUCKET}-{tmp_path.name.lower().replace('_', '-')}"[:63]
    s3.create_bucket(Bucket=bucket)
    return Settings(
        s3_bucket=bucket,
        s3_endpoint_url=s3_endpoint,
        s3_region="us-east-1",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        s3_timeout_s=5,
    )


def _objects(settings: Settings) -> set[str]:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.s3_bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_push_pull_status_and_old_version_from_s3(source: Path, repo: Path, settings: Settings) -> None:
    v1 = import_dataset(source, repo, ImportFilters(max_images=2))
    push(repo, "s3", settings)
    import_dataset(source, repo, ImportFilters(max_images=4))
    assert remote_status(repo, "s3", settings)  # version 2's new images are not on S3 yet
    push(repo, "s3", settings)
    assert remote_status(repo, "s3", settings) == {}
    assert any(key.startswith("faceops/dvc/") for key in _objects(settings))
    assert (
        "secret" not in (repo / ".dvc" / "config").read_text() + (repo / ".dvc" / "config.local").read_text()
    )

    # A fresh machine: no cache, no data. Pull the current version, then restore version 1 by git revision.
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data")
    pull(repo, "s3", settings)
    assert len(read_manifest(repo / "data")) == 20
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data")
    restore_version(repo, v1.rev, remote="s3", env=remote_env(settings))
    assert len(read_manifest(repo / "data")) == 10
    assert workspace_status(repo) == {}


def test_unreachable_remote_fails_clearly_and_loses_nothing(
    source: Path, repo: Path, settings: Settings
) -> None:
    import_dataset(source, repo, ImportFilters(max_images=2))
    push(repo, "s3", settings)
    stored = _objects(settings)
    import_dataset(source, repo, ImportFilters(max_images=3))
    down = settings.model_copy(
        update={"s3_endpoint_url": f"http://127.0.0.1:{_free_port()}", "s3_timeout_s": 1}
    )
    with pytest.raises(RemoteUnavailable, match="nothing stored before was lost"):
        push(repo, "s3", down)
    assert _objects(settings) == stored  # the remote is untouched
    assert workspace_status(repo) == {}  # the cache still has every file of the current version
    push(repo, "s3", settings)  # once reachable, the push completes
    assert remote_status(repo, "s3", settings) == {}


def test_s3_remote_needs_a_bucket(source: Path, repo: Path) -> None:
    import_dataset(source, repo, ImportFilters(max_images=1), commit=False)
    with pytest.raises(ConfigError, match="FACEOPS_S3_BUCKET"):
        push(repo, "s3", Settings(s3_bucket=None))
