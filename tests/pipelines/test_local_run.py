"""The whole training pipeline on kfp.local (SubprocessRunner), on five LFW people, and a run that fails.

Every store is in tmp_path: a git + DVC repository for the data, the MLflow SQLite store, the caches.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _status(workspace: Path) -> list[dict]:
    path = workspace.parent / "outputs" / "pipeline" / "status.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _step_lines(console: str) -> dict[str, str]:
    """Step name -> status, from the step lines of a run's console output."""
    found = re.findall(r"^  ([\w-]+(?: \[\d+\])?) +(ok|failed|cached|skipped)\b", console, re.M)
    return dict(found)


@pytest.mark.e2e
def test_training_pipeline_end_to_end(
    workspace: Path, source_tree: Path, smoke_config: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    from faceops.kfp.pipelines.run import local_arguments, run_local

    from faceops import registry

    arguments = local_arguments(
        workspace,
        source=str(source_tree),
        run_config=smoke_config,
        validation={"face_sample": 4},
        shards=2,
        # the new champion's MobileFaceNet variant, gated on 12 pairs of each of LFW folds 1-4 (at the smoke
        # config's target FAR 0.01) and on the data version
        optimize_lfw_folds=[1, 2, 3, 4],
        optimize_pairs_per_fold=12,
    )
    result = run_local("training", arguments)
    console = capsys.readouterr().out

    assert result["status"] == "SUCCEEDED" and result["backend"] == "local"
    # the terminal got the log's path and one line per step, none of kfp's executor output ...
    log = Path(result["log"])
    assert str(log) in console.splitlines()[0]
    steps = _step_lines(console)
    assert steps == {s["name"]: s["status"] for s in result["steps"]}
    progress = re.compile(r"^  [\w-]+: \d+/\d+ \w+ \(\d+%\)$")  # spaced progress lines (no terminal)
    others = [line for line in console.splitlines()[1:] if not progress.match(line)]
    assert len(others) == len(steps) == len(result["steps"])
    assert {"preprocess-shard [0]", "preprocess-shard [1]", "train", "promote", "record-status"} <= set(steps)
    assert set(steps.values()) == {"ok"}
    assert "executor_input" not in console and "parameterValues" not in console and "KFP Executor" not in console
    # ... which is all in the log file
    text = log.read_text()
    assert "Got executor_input" in text and "parameterValues" in text and "head epoch 1" in text
    assert set(result["executed"]) >= {
        "data-version",
        "validate",
        "preprocess-shard",
        "train",
        "evaluate",
        "register-and-gate",
        "promote",
        "optimize",
        "record-status",
    }
    # the data was imported as a DVC data version, committed, and pushed to the local remote
    assert (workspace / "data.dvc").is_file() and (workspace / ".dvc-storage").is_dir()
    # the trained model, promoted by the gate as the first champion; then its MobileFaceNet variant, admitted by
    # the parity gate and promoted in its place
    versions = {v["version"]: v for v in registry.list_versions(arguments["tracking_uri"])}
    assert sorted(versions) == ["1", "2"]
    assert versions["1"]["aliases"] == [] and versions["2"]["aliases"] == ["champion"]
    gate = json.loads(versions["1"]["tags"]["faceops.evaluation.gate"])
    assert gate["promoted"] is True and "first champion" in gate["reason"]
    metrics = json.loads(versions["1"]["tags"]["faceops.evaluation.metrics"])
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["auc"] <= 1.0
    assert versions["2"]["tags"]["method"] == "mobilefacenet"
    history = registry.champion_history(arguments["tracking_uri"])
    assert [h["version"] for h in history] == ["1", "2"] and "parity gate" in history[-1]["reason"]
    champion = registry.load_bundle("models:/faceops@champion", arguments["tracking_uri"])
    assert champion.family == "mobilefacenet" and champion.metadata["source_version"] == "1"
    outcome = json.loads(next(Path(result["pipeline_root"]).glob("*/optimize/decision/outcome.json")).read_text())
    assert outcome["admitted"] and outcome["promoted"] and outcome["version"] == "2", outcome
    # the step artifacts: an evaluation with plots, HTML reports, the stats of preprocessing
    reports = Path(versions["1"]["tags"]["faceops.reports"])
    assert (reports / "report.json").is_file() and (reports / "roc_open_set.png").is_file()
    assert (reports / "report.html").read_text().count("data:image/png;base64,") >= 2
    assert _status(workspace)[-1]["state"] == "SUCCEEDED"
    # the monitoring reference was logged with the model at evaluation time, on the data version it was
    # evaluated on
    from faceops.monitoring.reference import fetch_reference

    reference = fetch_reference("1", arguments["tracking_uri"], workspace.parent / "ref-cache")
    assert reference is not None and reference.meta["model_version"] == "1"
    assert len(reference) > 0 and {"brightness", "blur", "top1_similarity"} <= set(reference.features)
    variant = fetch_reference("2", arguments["tracking_uri"], workspace.parent / "ref-cache")  # the variant's own
    assert variant is not None and variant.meta["model_version"] == "2" and variant.embeddings.shape[1] == 128

    # the same run again: the expensive steps come from kfp's cache, and the identical model is not registered
    # a second time (nor "promoted" over its own variant)
    again = run_local("training", arguments)
    assert again["status"] == "SUCCEEDED"
    steps = _step_lines(capsys.readouterr().out)
    assert steps["train"] == "cached" and steps["promote"] == "skipped" and steps["data-version"] == "ok"
    assert steps["optimize"] == "skipped"
    assert not {"validate", "preprocess-shard", "train", "evaluate", "promote", "optimize"} & set(again["executed"])
    assert sorted(v["version"] for v in registry.list_versions(arguments["tracking_uri"])) == ["1", "2"]
    assert [h["version"] for h in registry.champion_history(arguments["tracking_uri"])] == ["1", "2"]


def test_failed_validation_stops_the_run(
    workspace: Path, bad_source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Images below the size floor: the validate step fails, the run stops there and nothing is registered."""
    from faceops.kfp.pipelines.run import local_arguments, run_local

    from faceops import registry
    from faceops.errors import PipelineError

    arguments = local_arguments(workspace, source=str(bad_source), validation={"face_sample": 0})
    with pytest.raises(PipelineError) as failure:
        run_local("training", arguments)

    message = str(failure.value)
    assert "failed at step 'validate'" in message
    assert "DataValidationFailed" in message and "width" in message  # the step's own error, quoted
    log = Path(re.search(r"full log: (\S+)\)$", message).group(1))
    assert log.is_file() and "DataValidationFailed" in log.read_text()
    # the terminal: the failed step with the end of its output, the steps after it skipped
    console = capsys.readouterr().out
    steps = _step_lines(console)
    assert steps["data-version"] == "ok" and steps["validate"] == "failed" and steps["train"] == "skipped"
    assert re.search(r"^    \| .*DataValidationFailed", console, re.M)
    assert registry.list_versions(arguments["tracking_uri"]) == []
    assert registry.alias_version(registry.CHAMPION, arguments["tracking_uri"]) is None
    status = _status(workspace)[-1]
    assert status["state"] == "FAILED" and status["pipeline"] == "faceops-training"
    run_dirs = list((workspace.parent / "outputs" / "pipeline" / "runs").glob("faceops-training-*"))
    steps = {p.parent.name for d in run_dirs for p in d.rglob("executor_output.json")}
    assert "train" not in steps and "register-and-gate" not in steps


def test_cli_reports_a_failed_run_in_one_line(workspace: Path, bad_source: Path) -> None:
    from click.testing import CliRunner

    from faceops.cli import cli

    result = CliRunner().invoke(
        cli,
        ["pipeline", "run", "--local", "--repo", str(workspace), "--source", str(bad_source)]
        + ["--no-cache"],
    )
    assert result.exit_code == 1
    assert "error: pipeline faceops-training failed at step 'validate'" in result.output
