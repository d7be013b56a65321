"""Compiling the pipelines: the YAML the Kubeflow UI uploads holds every step, parameter, artifact, branch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="module")
def compiled(documents: dict[str, list[dict]]) -> dict[str, dict]:
    return {name: docs[0] for name, docs in documents.items()}


def _dags(spec: dict) -> dict[str, dict]:
    """Every DAG of the spec (the root and the nested ones: exit handler, loop, condition) by name."""
    dags = {"root": spec["root"]["dag"]}
    dags.update({k: v["dag"] for k, v in spec["components"].items() if "dag" in v})
    return dags


def _executors(spec: dict) -> set[str]:
    return {name.removeprefix("exec-") for name in spec["deploymentSpec"]["executors"]}


@pytest.mark.parametrize("name", ["training", "retraining"])
def test_every_step_is_a_component(compiled: dict[str, dict], name: str) -> None:
    from faceops.kfp.pipelines.summary import STEPS  # the step list the run summary reports on

    spec = compiled[name]
    assert _executors(spec) == set(STEPS) and len(STEPS) == 12
    # every step runs in the image given by the pipeline's ``image`` parameter (shown in the UI)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"{{$.inputs.parameters['pipelinechannel--image']}}"}
    image = spec["root"]["inputDefinitions"]["parameters"]["image"]
    assert image["defaultValue"] == "ghcr.io/faceops/faceops-python:0.1.0"
    # The components run in the FaceOps image: no pip install of kfp at run time.
    for executor in spec["deploymentSpec"]["executors"].values():
        assert "pip install" not in " ".join(executor["container"].get("command", []))


def test_parameters(compiled: dict[str, dict]) -> None:
    training = compiled["training"]["root"]["inputDefinitions"]["parameters"]
    retraining = compiled["retraining"]["root"]["inputDefinitions"]["parameters"]
    common = {
        "data_version": "STRING",
        "run_config": "STRUCT",
        "validation": "STRUCT",
        "max_accuracy_drop": "NUMBER_DOUBLE",
        "max_far_increase": "NUMBER_DOUBLE",
        "min_tar_at_far": "NUMBER_DOUBLE",
        "shards": "NUMBER_INTEGER",
        "workers": "NUMBER_INTEGER",
        "tracking_uri": "STRING",
    }
    for params in (training, retraining):
        assert {k: params[k]["parameterType"] for k in common} == common
    assert {"source", "identities_file", "min_images"} <= set(training)
    assert "source" not in retraining and retraining["reason"]["defaultValue"] == "manual"
    # the gate's defaults are the GateConfig's
    from faceops.training.config import GateConfig

    assert training["max_far_increase"]["defaultValue"] == GateConfig().max_far_increase


def test_artifacts_are_typed(compiled: dict[str, dict]) -> None:
    components = compiled["training"]["components"]

    def outputs(step: str) -> dict[str, str]:
        arts = components[f"comp-{step}"].get("outputDefinitions", {}).get("artifacts", {})
        return {k: v["artifactType"]["schemaTitle"] for k, v in arts.items()}

    assert outputs("data-version") == {"dataset": "system.Dataset"}
    assert outputs("validate") == {
        "report": "system.HTML",
        "results": "system.Artifact",
        "metrics": "system.Metrics",
    }
    assert outputs("preprocess-merge") == {"preprocessed": "system.Dataset", "metrics": "system.Metrics"}
    assert outputs("train") == {"model": "system.Model", "metrics": "system.Metrics", "report": "system.HTML"}
    assert outputs("evaluate") == {
        "evaluation": "system.Artifact",
        "metrics": "system.Metrics",
        "report": "system.HTML",
    }
    inputs = components["comp-register-and-gate"]["inputDefinitions"]["artifacts"]
    assert inputs["model"]["artifactType"]["schemaTitle"] == "system.Model"


def test_gate_condition_loop_and_exit_handler(compiled: dict[str, dict]) -> None:
    spec = compiled["training"]
    tasks = {name: task for dag in _dags(spec).values() for name, task in dag["tasks"].items()}
    conditions = [
        t["triggerPolicy"]["condition"] for t in tasks.values() if t.get("triggerPolicy", {}).get("condition")
    ]
    assert (
        len(conditions) == 1 and "register-and-gate-Output" in conditions[0] and "'promote'" in conditions[0]
    )
    condition_dag = next(
        _dags(spec)[t["componentRef"]["name"]]
        for t in tasks.values()
        if t.get("triggerPolicy", {}).get("condition")
    )
    # promotion, and then a faster variant of the new champion, happen only when the gate passes
    assert set(condition_dag["tasks"]) == {"promote", "optimize"}
    assert condition_dag["tasks"]["optimize"]["dependentTasks"] == ["promote"]
    loops = [t for t in tasks.values() if "parameterIterator" in t]
    assert len(loops) == 1
    loop_dag = _dags(spec)[loops[0]["componentRef"]["name"]]
    assert set(loop_dag["tasks"]) == {"preprocess-shard"}
    # unbounded: the ``shards`` parameter is the fan-out (ParallelFor's limit could only be a compile-time number)
    assert loops[0].get("iteratorPolicy", {}).get("parallelismLimit", 0) == 0
    assert loops[0]["parameterIterator"]["items"]["inputParameter"].endswith("plan-shards-Output")
    exit_task = spec["root"]["dag"]["tasks"]["record-status"]
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert "taskFinalStatus" in exit_task["inputs"]["parameters"]["status"]


@pytest.mark.parametrize("name", ["train-detector"])
def test_detector_pipeline_steps_parameters_and_gate(compiled: dict[str, dict], name: str) -> None:
    from faceops.kfp.pipelines.platform import RESOURCES
    from faceops.kfp.pipelines.summary import DETECTOR_STEPS

    from faceops.detector.gate import DETECTOR_MODEL_NAME, DetectorGateConfig

    spec = compiled[name]
    assert _executors(spec) == set(DETECTOR_STEPS) and set(DETECTOR_STEPS) <= set(RESOURCES)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"{{$.inputs.parameters['pipelinechannel--image']}}"}
    params = spec["root"]["inputDefinitions"]["parameters"]
    types = {
        "photos": "NUMBER_INTEGER",
        "train": "STRUCT",
        "net": "STRUCT",
        "lfw_folds": "LIST",
        "pairs_per_fold": "NUMBER_INTEGER",
        "max_accuracy_drop": "NUMBER_DOUBLE",
        "max_recall_drop": "NUMBER_DOUBLE",
        "detector_model": "STRING",
        "tracking_uri": "STRING",
    }
    assert {k: params[k]["parameterType"] for k in types} == types
    # the gate's tolerances and the registered model's name default to the config's
    gate = DetectorGateConfig()
    assert params["max_accuracy_drop"]["defaultValue"] == gate.max_accuracy_drop
    assert params["max_recall_drop"]["defaultValue"] == gate.max_recall_drop
    assert params["detector_model"]["defaultValue"] == DETECTOR_MODEL_NAME
    # promotion only under the gate's decision; the exit handler records the status whatever happens
    tasks = {n: t for dag in _dags(spec).values() for n, t in dag["tasks"].items()}
    conditioned = [t for t in tasks.values() if t.get("triggerPolicy", {}).get("condition")]
    assert len(conditioned) == 1
    condition = conditioned[0]["triggerPolicy"]["condition"]
    assert "register-detector-Output" in condition and "'promote'" in condition
    assert set(_dags(spec)[conditioned[0]["componentRef"]["name"]]["tasks"]) == {"promote-detector"}
    assert tasks["evaluate-detector"]["dependentTasks"] == ["train-detector"]
    assert set(tasks["register-detector"]["dependentTasks"]) == {"evaluate-detector", "train-detector"}
    # evaluation and registration compare with the champion of the moment: never taken from kfp's cache
    assert tasks["train-detector"]["cachingOptions"]["enableCache"] is True
    for step in ("evaluate-detector", "register-detector", "promote-detector"):
        assert not tasks[step].get("cachingOptions", {}).get("enableCache", False)
    assert spec["root"]["dag"]["tasks"]["record-status"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"


def test_cli_compile_with_image(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from faceops.cli import cli

    result = CliRunner().invoke(
        cli, ["pipeline", "compile", "--out", str(tmp_path), "--image", "registry.local/fo:1"]
    )
    assert result.exit_code == 0, result.output
    spec = next(yaml.safe_load_all((tmp_path / "training.yaml").read_text()))
    assert spec["root"]["inputDefinitions"]["parameters"]["image"]["defaultValue"] == "registry.local/fo:1"
    assert (tmp_path / "retraining.yaml").is_file() and (tmp_path / "train-detector.yaml").is_file()


def test_importing_the_runner_has_no_side_effect(tmp_path: Path) -> None:
    code = (
        "import sys, faceops.kfp.pipelines, faceops.kfp.pipelines.run, faceops.kfp.pipelines.watch; "
        "assert 'kfp' not in sys.modules, 'kfp imported'; "
        "import os; assert os.listdir('.') == [], os.listdir('.')"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
