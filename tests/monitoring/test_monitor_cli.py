"""``faceops monitor``: run (once) against a local reference, the decision log, and clear failures."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

from faceops.cli import cli


def _config(tmp_path, log, reference_dir, **extra) -> str:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "request_log": str(log),
                "reference_dir": str(reference_dir),
                "log_to_mlflow": False,
                "reports_dir": str(tmp_path / "reports"),
                "state_path": str(tmp_path / "state.sqlite"),
                "policy": {"min_faces": 10, "min_feedback": 10},
                "alerts": [{"type": "file", "path": str(tmp_path / "a.jsonl")}],
                **extra,
            }
        )
    )
    return str(path)


def test_monitor_run_and_decisions(tmp_path, traffic_log, reference_dir):
    config = _config(tmp_path, traffic_log["path"], reference_dir)
    since = str(traffic_log["degraded"][0])
    result = CliRunner().invoke(
        cli, ["monitor", "run", "-c", config, "--since", since, "--no-trigger", "--json"]
    )
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["action"] == "alert" and any("trigger is disabled" in r for r in run["reasons"])
    assert (tmp_path / "reports").is_dir() and (tmp_path / "a.jsonl").is_file()

    listed = CliRunner().invoke(cli, ["monitor", "decisions", "-c", config])
    assert listed.exit_code == 0 and "alert" in listed.output and "drift:" in listed.output


def test_monitor_run_fails_clearly(tmp_path, reference_dir):
    config = _config(tmp_path, tmp_path / "missing.sqlite", reference_dir)
    result = CliRunner().invoke(cli, ["monitor", "run", "-c", config])
    assert result.exit_code == 1 and "request log not found" in result.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("policy: {cooldwn: 1h}\n")
    result = CliRunner().invoke(cli, ["monitor", "run", "-c", str(bad)])
    assert result.exit_code == 1 and "cooldwn" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["monitor", "run", "-c", config, "--every", "soon"])
    assert result.exit_code == 1 and "bad duration" in result.output


def test_monitor_every_runs_repeatedly(tmp_path, reference_dir, traffic_log):
    config = _config(tmp_path, traffic_log["path"], reference_dir)
    since = str(traffic_log["normal"][0])
    result = CliRunner().invoke(
        cli,
        [
            "monitor",
            "run",
            "-c",
            config,
            "--since",
            since,
            "--every",
            "1s",
            "--max-runs",
            "2",
            "--no-trigger",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("report:") == 2
