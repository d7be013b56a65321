"""How MLflow's and requests' failures reach FaceOps callers: mapped once, in faceops.registry."""

from __future__ import annotations

import socket

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2

from faceops import registry
from faceops.errors import ConfigError, ModelNotFound, RegistryError, TrackingUnavailable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_an_unreachable_tracking_uri_is_a_registry_error_naming_the_uri():
    uri = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(RegistryError, match=f"tracking server at {uri}") as caught:
        registry.alias_version(registry.CHAMPION, uri)
    assert isinstance(caught.value, TrackingUnavailable)
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_an_unknown_model_name_or_version_is_model_not_found(local_store):
    with pytest.raises(ModelNotFound, match="models:/no-such-model/1") as caught:
        registry.load_bundle("models:/no-such-model/1")
    assert isinstance(caught.value.__cause__, MlflowException)
    with pytest.raises(ModelNotFound, match="has no version 7"):
        registry.version_run_id("7")
    assert registry.alias_version(registry.CHAMPION) is None  # "no alias yet" is an answer, not an error
    with pytest.raises(RegistryError, match="cannot fetch the reference") as fetch:
        registry.download_artifacts("0" * 32, "monitoring_reference", local_store, context="cannot fetch the reference")
    assert not isinstance(fetch.value, ModelNotFound) and local_store in str(fetch.value)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("RESOURCE_DOES_NOT_EXIST", ModelNotFound),
        ("NOT_FOUND", ModelNotFound),
        ("INVALID_PARAMETER_VALUE", RegistryError),  # a bad value is not a missing model, except in look-ups
        ("INTERNAL_ERROR", RegistryError),
    ],
)
def test_the_exception_map_by_mlflow_error_code(code, expected):
    original = MlflowException("the store says no", error_code=getattr(databricks_pb2, code))
    with pytest.raises(RegistryError) as caught, registry.map_exceptions("sqlite:///somewhere.db", "loading v3"):
        raise original
    assert type(caught.value) is expected and caught.value.__cause__ is original
    assert "loading v3: the store says no" in str(caught.value)
    if expected is RegistryError:
        assert "sqlite:///somewhere.db" in str(caught.value)


def test_a_connection_error_wrapped_by_mlflow_is_tracking_unavailable():
    uri = "http://127.0.0.1:5999"
    with pytest.raises(TrackingUnavailable, match=f"at {uri}"), registry.map_exceptions(uri):
        try:
            raise requests.ConnectionError("Max retries exceeded")
        except requests.ConnectionError as exc:  # what mlflow.utils.rest_utils does with it (no "from")
            raise MlflowException(f"API request to {uri} failed with exception {exc}")  # noqa: B904
    with pytest.raises(TrackingUnavailable, match=f"at {uri}"), registry.map_exceptions(uri):
        try:
            raise requests.ConnectTimeout("timed out")
        except requests.ConnectTimeout as exc:
            raise MlflowException(f"API request to {uri} failed with timeout exception {exc}") from exc


def test_other_exceptions_pass_through_unchanged(local_store):
    with pytest.raises(ValueError, match="not ours"), registry.map_exceptions("sqlite:///x.db"):
        raise ValueError("not ours")
    closed = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(requests.ConnectionError), registry.open_run("body-fails"):
        requests.get(closed, timeout=5)  # the run's own HTTP call (e.g. an alert webhook), not MLflow's failure
    mine = ConfigError("a FaceOps error stays itself")
    with pytest.raises(ConfigError) as caught, registry.map_exceptions("sqlite:///x.db"):
        raise mine
    assert caught.value is mine
