"""The cluster settings in the compiled YAML (kfp-kubernetes): Secrets and ConfigMap as env, resources, retries,
the image parameter, the optional cache PVC; and no host path in any parameter default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from faceops.kfp.pipelines import platform


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _constants(value: Any) -> list[Any]:
    """Every ``runtimeValue.constant`` of a spec (the values the compiler fixed in the tasks)."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "runtimeValue" and isinstance(item, dict) and "constant" in item:
                found.append(item["constant"])
            else:
                found += _constants(item)
    elif isinstance(value, list):
        for item in value:
            found += _constants(item)
    return found


HOST_PATH = re.compile(r"^(/|~|[A-Za-z]:\\)|/(home|work|tmp|Users)/")


@pytest.mark.parametrize("name", ["training", "retraining"])
def test_no_absolute_host_path_in_any_parameter_default(documents: dict[str, list[dict]], name: str) -> None:
    spec = documents[name][0]
    defaults = {k: v.get("defaultValue") for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    values = _strings(defaults) + _strings(_constants(spec))
    assert values, "nothing checked"
    offending = [v for v in values if HOST_PATH.search(v) and not v.startswith("{{$")]
    assert offending == []
    # the places the steps share are parameters left empty: the pods read them from the ConfigMap
    assert {defaults[k] for k in ("repo", "remote", "store", "tracking_uri")} == {""}


DETECTOR_STEPS = {step for step in platform.RESOURCES if step.endswith("-detector")}


@pytest.mark.parametrize("name", ["training", "retraining", "train-detector"])
def test_every_step_gets_secrets_config_map_resources_and_retries(documents: dict[str, list[dict]], name: str) -> None:
    spec, platform_spec = documents[name]
    k8s = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors = spec["deploymentSpec"]["executors"]
    assert set(k8s) == set(executors)
    steps = {label.removeprefix("exec-") for label in executors}
    if name == "train-detector":
        assert DETECTOR_STEPS <= steps <= set(platform.RESOURCES), steps ^ DETECTOR_STEPS
    else:  # every embedder step of the settings table, and only those
        assert steps == set(platform.RESOURCES) - DETECTOR_STEPS
    for label, config in k8s.items():
        secrets = {s["secretName"]: s for s in config["secretAsEnv"]}
        assert {e["secretKey"] for e in secrets["faceops-s3"]["keyToEnv"]} == {
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        }
        assert secrets["faceops-s3"].get("optional", False) is False
        assert secrets["faceops-mlflow"]["optional"] is True
        assert {e["envVar"] for e in secrets["faceops-mlflow"]["keyToEnv"]} == set(platform.MLFLOW_KEYS)
        (maps,) = config["configMapAsEnv"]
        assert maps["configMapName"] == "faceops-endpoints"
        assert {e["configMapKey"] for e in maps["keyToEnv"]} == {
            "AWS_ENDPOINT_URL",
            "MLFLOW_TRACKING_URI",
            "FACEOPS_STORE",
            "FACEOPS_DVC_REMOTE",
            "FACEOPS_DATA_REPO",
        }
        assert "pvcMount" not in config  # the cache PVC is a compile-time option, off by default
        resources = executors[label]["container"]["resources"]
        assert resources["cpuRequest"] > 0 and resources["memoryRequest"] > 0
    # retries on the steps that touch the network and are safe to repeat; never on the registration
    tasks = {}
    for dag in [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]:
        tasks.update(dag["tasks"])
    retries = {t: v["retryPolicy"]["maxRetryCount"] for t, v in tasks.items() if "retryPolicy" in v}
    assert retries == {k: v for k, v in platform.RETRIES.items() if k in steps}
    if name == "train-detector":
        assert executors["exec-train-detector"]["container"]["resources"]["cpuRequest"] == 4.0
        assert not {"register-detector", "promote-detector"} & set(retries)
    else:
        assert executors["exec-train"]["container"]["resources"]["cpuRequest"] == 4.0
        assert "register-and-gate" not in retries
        assert tasks["preprocess-shard"]["retryPolicy"]["backoffDuration"] == "30s"


def test_cache_pvc_is_a_compile_time_option(tmp_path: Path) -> None:
    from faceops.kfp.pipelines.run import compile_pipelines

    path = compile_pipelines(tmp_path, ["training"], cache_pvc="faceops-cache")["training"]
    spec, platform_spec = yaml.safe_load_all(path.read_text())
    for label, config in platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"].items():
        (mount,) = config["pvcMount"]
        assert mount["mountPath"] == platform.CACHE_MOUNT and mount["constant"] == "faceops-cache"
        env = {e["name"]: e["value"] for e in spec["deploymentSpec"]["executors"][label]["container"]["env"]}
        assert env["FACEOPS_CACHE_DIR"] == platform.CACHE_MOUNT


def test_a_step_without_platform_settings_is_refused() -> None:
    """A new step must be given its resources: wiring it without is an error at compile time, not a pod
    scheduled with none."""

    class Task:
        name = "new-step"

    with pytest.raises(KeyError, match="new-step"):
        platform.apply(Task(), "image")
