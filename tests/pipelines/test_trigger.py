"""The retraining trigger (the contract with monitoring), the runner's argument checks, the CLI's refusals."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from faceops.errors import ConfigError, PipelineUnavailable


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reason": " "}, "needs a reason"),
        ({"reason": "drift", "backend": "airflow"}, "unknown backend 'airflow'"),
        ({"reason": "drift", "backend": "kfp"}, "needs the host"),
    ],
)
def test_trigger_refuses_bad_requests(kwargs: dict, message: str) -> None:
    from faceops.kfp.pipelines.run import trigger_retraining

    with pytest.raises(ConfigError, match=message):
        trigger_retraining(**kwargs)


@pytest.mark.integration
def test_trigger_on_an_unreachable_cluster_fails_clearly() -> None:
    from faceops.kfp.pipelines.run import trigger_retraining

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        PipelineUnavailable, match=f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}"
    ):
        trigger_retraining("drift", backend="kfp", host=f"http://127.0.0.1:{port}")


def test_unknown_pipeline_arguments_are_refused(tmp_path: Path) -> None:
    from faceops.kfp.pipelines.run import run_local

    with pytest.raises(ConfigError, match=r"no parameter\(s\) \['epochs'\]"):
        run_local("training", {"epochs": 3}, pipeline_root=tmp_path)
    with pytest.raises(ConfigError, match="unknown pipeline 'nightly'"):
        run_local("nightly", {}, pipeline_root=tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pipeline", "run"], "give --local"),
        (["pipeline", "run", "--local", "--pipeline", "retraining"], "needs --reason"),
        (
            ["pipeline", "run", "--local", "--pipeline", "retraining", "--reason", "x", "--source", "."],
            "not --source",
        ),
    ],
)
def test_cli_usage_errors(args: list[str], message: str) -> None:
    from faceops.cli import cli

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and message in result.output


def test_cli_refuses_a_bad_run_config(tmp_path: Path) -> None:
    from faceops.cli import cli

    config = tmp_path / "train.yaml"
    config.write_text("head_stage: {epochs: 2, lr: 0.01}\nlearning_rate: 3\n")
    result = CliRunner().invoke(cli, ["pipeline", "run", "--local", "--config", str(config)])
    assert result.exit_code == 1 and "learning_rate" in result.output


def test_infra_matches_the_components() -> None:
    """The Dockerfile installs what the components import; the manifests run the components' image."""
    from faceops.kfp.components.image import IMAGE

    infra = Path(__file__).resolve().parents[2] / "infra"
    dockerfile = (infra / "Dockerfile").read_text()
    assert "'.[mlops,serve]'" in dockerfile
    # the build imports the pipelines as installed (faceops.kfp.*) and kfp
    check = re.search(r'python -c "(import [^"]+)"', dockerfile)
    assert check and "faceops.kfp.pipelines" in check.group(1) and re.search(r"\bkfp\b,", check.group(1))
    assert IMAGE in dockerfile
    for manifest in (infra / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(manifest.read_text()):
            pods = doc.get("spec", {}).get("template", {}).get("spec") or (
                doc.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
            )
            for container in (pods or {}).get("containers", []):
                assert container["image"] == IMAGE, manifest.name
