"""The MLflow registry and the gate, on the default kind of store (SQLite) and on a real `mlflow server`."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import torch

from faceops import registry
from faceops.errors import ModelNotFound, RegistryError, TrackingUnavailable
from faceops.evaluation.bundle import ModelBundle
from faceops.evaluation.gate import run_gate


@pytest.fixture(scope="module")
def pretrained(trained):
    """The pretrained model with a threshold calibrated the same way as the fine-tuned one."""
    bundle = ModelBundle.pretrained()
    bundle.threshold = trained.report["models"]["pretrained"]["open_set"]["threshold"]
    bundle.target_far = trained.report["models"]["pretrained"]["open_set"]["target_far"]
    bundle.metadata = {"cut": "block8"}
    return bundle


def test_log_load_and_aliases_on_the_local_store(local_store, trained):
    assert registry.alias_version(registry.CHAMPION) is None  # an empty registry is not an error here
    version = registry.log_bundle(trained.bundle_dir)
    assert version == "1" and registry.alias_version(registry.CHALLENGER) == "1"
    loaded = registry.load_bundle("models:/faceops@challenger")
    original = ModelBundle.load(trained.bundle_dir)
    assert loaded.threshold == original.threshold and loaded.preprocess == original.preprocess
    assert all(
        torch.equal(v, loaded.backbone.state_dict()[k]) for k, v in original.backbone.state_dict().items()
    )
    tags = registry.list_versions()[0]["tags"]
    assert float(tags["threshold"]) == pytest.approx(original.threshold, abs=5e-7)  # the tag has 6 decimals
    assert json.loads(tags["data_version"])["manifest_sha256"]
    with pytest.raises(ModelNotFound, match="champion"):
        registry.load_bundle("models:/faceops@champion")
    with pytest.raises(ModelNotFound, match="no champion"):
        registry.rollback()


def test_a_failed_registration_leaves_no_version(local_store, trained, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    def broken(*args, **kwargs):
        raise MlflowException("alias store is down")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", broken)
    with pytest.raises(RegistryError, match="alias store is down"):
        registry.log_bundle(trained.bundle_dir)
    monkeypatch.undo()
    assert registry.list_versions() == []
    assert registry.alias_version(registry.CHALLENGER) is None


def test_gate_refuses_worse_and_identical_challengers_promotes_a_stricter_one_and_rolls_back(
    local_store, pretrained, smoke_config, cache_dir
):
    def gate():
        return run_gate(smoke_config.data_root, smoke_config.gate, smoke_config.evaluation, cache_dir=cache_dir)

    v1 = registry.log_bundle(pretrained)
    first = gate()
    assert first.promoted and "first champion" in first.reason and registry.alias_version("champion") == v1

    worse = ModelBundle.pretrained()
    worse.threshold, worse.metadata = 0.0, {"cut": "block8"}  # accepts far too much: FAR rises
    with torch.no_grad():
        worse.backbone.last_linear.weight.add_(torch.randn_like(worse.backbone.last_linear.weight) * 0.5)
    v2 = registry.log_bundle(worse)
    refused = gate()
    assert not refused.promoted and refused.reason.startswith("refused:") and "FAR" in refused.reason
    assert registry.alias_version("champion") == v1 and registry.alias_version("challenger") == v2
    tag = json.loads(next(v for v in registry.list_versions() if v["version"] == v2)["tags"]["faceops.evaluation.gate"])
    assert tag["promoted"] is False and tag["champion"] == v1

    registry.log_bundle(pretrained)  # the champion again: nothing would change
    same = gate()
    assert not same.promoted and "same weights" in same.reason

    v3 = registry.log_bundle(dataclasses.replace(pretrained, threshold=pretrained.threshold + 0.02))
    promoted = gate()
    assert promoted.promoted and registry.alias_version("champion") == v3
    assert registry.alias_version("challenger") is None
    history = registry.champion_history()
    assert [(h["version"], h["previous"]) for h in history] == [(v1, None), (v3, v1)]

    assert registry.rollback() == v1 and registry.alias_version("champion") == v1
    assert registry.champion_history()[-1]["action"] == "rollback"
    with pytest.raises(ModelNotFound, match="nothing to roll back"):
        registry.rollback()


@pytest.mark.integration
def test_the_same_contract_against_a_real_mlflow_server(mlflow_server, trained, monkeypatch):
    from faceops.settings import get_settings

    monkeypatch.setenv("FACEOPS_MLFLOW_TRACKING_URI", mlflow_server)
    get_settings.cache_clear()
    try:
        version = registry.log_bundle(trained.bundle_dir, run_name="server-test")
        registry.set_alias(registry.CHAMPION, version, "test")
        loaded = registry.load_bundle("models:/faceops@champion")
        assert loaded.threshold == pytest.approx(ModelBundle.load(trained.bundle_dir).threshold)
        assert registry.list_versions()[0]["aliases"] == ["champion"]
    finally:
        get_settings.cache_clear()


def test_an_unreachable_server_fails_fast_with_a_clear_error():
    started = time.perf_counter()
    with pytest.raises(
        TrackingUnavailable, match="cannot reach the MLflow tracking server at http://127.0.0.1:9"
    ):
        registry.list_versions("http://127.0.0.1:9")
    assert time.perf_counter() - started < 10
