"""The object-store adapter and the steps' settings: each missing setting or unreachable service is an error
that names it (function level, real servers: moto S3 and closed ports on 127.0.0.1)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceops.errors import ConfigError, RemoteUnavailable, TrackingUnavailable, WeightsNotFound
from faceops.settings import get_settings
from faceops.storage import fetch_file, open_store, sha256_of, sync_down, sync_up


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No AWS configuration from this machine: no credentials file, no instance metadata, short timeouts."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "FACEOPS_S3_ACCESS_KEY_ID", "FACEOPS_S3_SECRET_ACCESS_KEY", "FACEOPS_S3_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "FACEOPS_STORE", "MLFLOW_TRACKING_URI",
                 "FACEOPS_MLFLOW_TRACKING_URI"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("FACEOPS_S3_TIMEOUT_S", "2")
    monkeypatch.setenv("FACEOPS_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _with_keys(env: pytest.MonkeyPatch, endpoint: str) -> None:
    env.setenv("AWS_ACCESS_KEY_ID", "testing")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    env.setenv("AWS_ENDPOINT_URL", endpoint)
    get_settings.cache_clear()


def test_s3_without_credentials_names_the_variables(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") as failure:
        open_store("s3://faceops/cache")
    assert "faceops-s3" in str(failure.value)  # the Secret a cluster user fills in


def test_an_unreachable_endpoint_names_it(env: pytest.MonkeyPatch) -> None:
    endpoint = _closed_port()
    _with_keys(env, endpoint)
    store = open_store("s3://faceops/cache")
    with pytest.raises(RemoteUnavailable, match=f"cannot reach the S3 endpoint {endpoint}"):
        store.listing()


def test_a_missing_bucket_and_refused_keys_are_named(env: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    _with_keys(env, moto_endpoint)
    with pytest.raises(RemoteUnavailable, match="bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket/x").listing()


def test_sync_copies_each_cache_file_once_both_ways(env: pytest.MonkeyPatch, moto_endpoint: str, tmp_path: Path) -> None:
    import boto3

    _with_keys(env, moto_endpoint)
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket="sync")
    store = open_store("s3://sync/cache")
    one, two = tmp_path / "one", tmp_path / "two"
    (one / "crops-abc").mkdir(parents=True)
    (one / "crops-abc" / "shard-1.npz").write_bytes(b"1")
    (one / "crops-other").mkdir()
    (one / "crops-other" / "shard-9.npz").write_bytes(b"9")
    assert sync_up(one, store, ["crops-abc"]) == 1
    assert sync_up(one, store, ["crops-abc"]) == 0  # already there
    assert set(store.listing()) == {"crops-abc/shard-1.npz"}
    assert sync_down(store, two, ["crops-abc"]) == 1 and (two / "crops-abc" / "shard-1.npz").read_bytes() == b"1"
    assert sync_down(store, two, ["crops-abc"]) == 0
    # a local store that is the cache folder itself: nothing to copy
    assert sync_up(one, open_store(str(one)), ["crops-abc"]) == 0


def test_weights_by_uri_are_fetched_once_and_checked(env: pytest.MonkeyPatch, moto_endpoint: str, tmp_path: Path) -> None:
    import boto3

    _with_keys(env, moto_endpoint)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="weights")
    s3.put_object(Bucket="weights", Key="a/w.pt", Body=b"weights")
    path = fetch_file("s3://weights/a/w.pt", tmp_path / "cache")
    assert path.read_bytes() == b"weights"
    s3.delete_object(Bucket="weights", Key="a/w.pt")
    assert fetch_file("s3://weights/a/w.pt", tmp_path / "cache", sha256_of(path)) == path  # from the cache
    with pytest.raises(ConfigError, match="sha256 differs"):
        fetch_file("s3://weights/a/w.pt", tmp_path / "cache", "0" * 64)
    assert not path.exists()


def test_unreachable_weights_uri_names_faceops_weights(env: pytest.MonkeyPatch) -> None:
    from faceops.face.embedding import load_backbone

    _with_keys(env, _closed_port())
    env.setenv("FACEOPS_WEIGHTS", "s3://weights/casia.pt")
    get_settings.cache_clear()
    with pytest.raises(WeightsNotFound, match="FACEOPS_WEIGHTS.*cannot reach the S3 endpoint"):
        load_backbone()


def test_steps_name_the_missing_store_and_tracking_settings(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from faceops.steps.context import step_inputs, tracking_uri

    ref = {"pointer": "outs: [{md5: x.dir}]", "remote": str(tmp_path)}
    with pytest.raises(ConfigError, match="FACEOPS_STORE"), step_inputs(ref, "", {}):
        pass
    with pytest.raises(ConfigError, match="MLFLOW_TRACKING_URI"):
        tracking_uri("")
    closed = _closed_port()
    with pytest.raises(TrackingUnavailable, match=f"cannot reach the MLflow tracking server {closed}"):
        tracking_uri(closed)
    env.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    assert tracking_uri("") == "sqlite:///x.db"
