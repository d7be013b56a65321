"""`faceops preprocess | train | evaluate | model ...` through click's runner, on real data and stores."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from faceops.cli import cli


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_preprocess_command(data_root, tmp_path, preprocessed):
    result = _run("preprocess", "--data", data_root, "--stats", tmp_path / "stats.csv", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["usable"] == summary["images"] == len(preprocessed.rows) and summary["processed_now"] == 0
    assert (tmp_path / "stats.csv").is_file()


def test_train_register_promote_list_evaluate(data_root, tmp_path, local_store, preprocessed):
    config = tmp_path.parent / "cfg.yaml"
    smoke = Path(__file__).parents[2] / "configs" / "train_smoke.yaml"
    config.write_text(smoke.read_text().replace("mlflow: false", "mlflow: true"))
    trained = _run("train", "-c", config, "--data", data_root, "--out", tmp_path / "run", "--json")
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["version"] == "1" and 0 <= summary["finetuned"]["closed_accuracy"] <= 1

    promoted = _run("model", "promote", "--data", data_root, "-c", config)
    assert promoted.exit_code == 0 and "PROMOTED v1" in promoted.output
    listed = json.loads(_run("model", "list", "--json").stdout)
    assert (
        listed["versions"][0]["aliases"] == ["champion"] and listed["champion_history"][0]["version"] == "1"
    )

    rollback = _run("model", "rollback")
    assert rollback.exit_code == 1 and "nothing to roll back" in rollback.output

    evaluated = _run(
        "evaluate",
        "--model",
        "models:/faceops@champion",
        "--model",
        tmp_path / "run" / "bundle",
        "--data",
        data_root,
        "-c",
        config,
        "--out",
        tmp_path / "eval",
        "--json",
    )
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads(evaluated.stdout)["metrics"]
    assert len(metrics) == 2
    a, b = metrics.values()
    assert (
        a["closed_accuracy"] == b["closed_accuracy"]
    )  # the same model, loaded from the registry and from disk
    assert (tmp_path / "eval" / "roc_open_set.png").is_file()


def test_bad_inputs_give_one_clear_line(tmp_path, data_root, local_store, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default output folder is relative: a refused run must write nothing
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\n")
    result = _run("train", "-c", bad, "--data", data_root)
    assert result.exit_code == 1 and "epochs" in result.output and "Traceback" not in result.output

    result = _run("train", "--data", tmp_path / "nothing", "--no-mlflow")
    assert result.exit_code == 1 and "no manifest" in result.output
    assert not (tmp_path / "outputs").exists()

    result = _run("train", "--data", data_root, "--tracking-uri", "http://127.0.0.1:9")
    assert result.exit_code == 1 and "cannot reach the MLflow tracking server" in result.output

    result = _run("model", "promote", "--data", data_root)
    assert result.exit_code == 1 and "no challenger" in result.output

    result = _run("evaluate", "--data", data_root)
    assert result.exit_code == 1 and "champion" in result.output
