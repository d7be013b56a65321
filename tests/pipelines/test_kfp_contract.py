"""Contract of submission: ``faceops pipeline submit|schedule`` and the monitor's trigger against a KFP v2beta1 API.

The server (:mod:`tests.pipelines.kfp_api_server`) is a real HTTP server on 127.0.0.1 answering with the
generated models of ``kfp-server-api``; it checks the bearer token and the namespace like a multi-user
Kubeflow. The monitor's part runs ``faceops monitor run`` in fresh processes and working directories whose
only shared things are that server and a real MLflow server (the monitor's state), on a small synthetic
request log whose every face feature drifted from the reference.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from faceops.cli import cli
from faceops.errors import ConfigError, PipelineUnavailable
from tests.monitoring.test_state_mlflow import stop_server
from tests.pipelines.kfp_api_server import KfpApiServer

pytestmark = pytest.mark.integration

TOKEN = "t0ken-for-tests"
NAMESPACE = "team-a"


@pytest.fixture
def kfp_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KFP setting of the machine leaks in (a kfp context file lives under HOME)."""
    for name in (
        "FACEOPS_KFP_TOKEN",
        "KF_PIPELINES_NAMESPACE",
        "KF_PIPELINES_ENDPOINT",
        "KF_PIPELINES_SA_TOKEN_PATH",
        "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
        "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _compiled(name: str, tmp_path: Path) -> list:
    from faceops.kfp.pipelines.run import compile_pipelines

    path = compile_pipelines(tmp_path / "compiled", [name])[name]
    return list(yaml.safe_load_all(path.read_text()))


def _submit(server: KfpApiServer, *extra: str) -> object:
    return CliRunner().invoke(
        cli,
        [
            "pipeline",
            "submit",
            "--host",
            server.url,
            "--namespace",
            NAMESPACE,
            "--experiment",
            "nightly",
            "--pipeline",
            "training",
            "--data-version",
            "v1.2",
            "--shards",
            "3",
            "--json",
            *extra,
        ],
    )


def test_submit_uploads_the_compiled_pipeline_and_starts_a_run(kfp_env, tmp_path, monkeypatch):
    monkeypatch.setenv("FACEOPS_KFP_TOKEN", TOKEN)
    with KfpApiServer(token=TOKEN, namespace=NAMESPACE) as server:
        result = _submit(server)
        assert result.exit_code == 0, result.output
        submitted = json.loads(result.stdout)  # kfp's printed links do not pollute --json
        assert submitted["status"] == "SUBMITTED" and submitted["state"] == "PENDING"
        assert submitted["namespace"] == NAMESPACE and submitted["experiment"] == "nightly"

        # every call carried the token
        assert server.requests and {r.headers.get("authorization") for r in server.requests} == {f"Bearer {TOKEN}"}
        # the experiment was looked up and created in the namespace
        (listed,) = server.calls("GET", "/experiments")
        (created,) = server.calls("POST", "/experiments")
        assert listed.query["namespace"] == NAMESPACE
        assert created.body["namespace"] == NAMESPACE and created.body["display_name"] == "nightly"
        # the uploaded file is the compiled training pipeline, uploaded into the namespace
        (upload,) = server.calls("POST", "/pipelines/upload")
        assert (upload.query["name"], upload.query["namespace"]) == ("faceops-training", NAMESPACE)
        filename, package = upload.body["uploadfile"]
        assert filename.endswith(".yaml")
        assert list(yaml.safe_load_all(package)) == _compiled("training", tmp_path)
        # the run: its parameters, its experiment, the uploaded version
        (run_call,) = server.calls("POST", "/runs")
        run = server.runs[submitted["run_id"]]
        assert run_call.body["runtime_config"]["parameters"] == {"data_version": "v1.2", "shards": 3}
        assert run.experiment_id == submitted["experiment_id"]
        assert server.experiments[run.experiment_id].namespace == NAMESPACE
        reference = run.pipeline_version_reference
        assert (reference.pipeline_id, reference.pipeline_version_id) == (submitted["pipeline_id"], submitted["pipeline_version_id"])
        assert server.uploaded_spec(reference.pipeline_version_id) == package.decode()

        # the same pipeline again: the same experiment and version are reused, only a run is added
        again = _submit(server)
        assert again.exit_code == 0, again.output
        second = json.loads(again.stdout)
        assert second["pipeline_version_id"] == submitted["pipeline_version_id"]
        assert second["run_id"] != submitted["run_id"] and len(server.runs) == 2
        assert len(server.calls("POST", "/pipelines/upload")) == 1 and not server.calls("POST", "/pipelines/upload_version")
        assert len(server.calls("POST", "/experiments")) == 1


def test_schedule_creates_a_recurring_run(kfp_env, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")  # a projected service-account token, re-read before each call
    with KfpApiServer(token=TOKEN, namespace=NAMESPACE) as server:
        result = CliRunner().invoke(
            cli,
            [
                "pipeline",
                "schedule",
                "--host",
                server.url,
                "--namespace",
                NAMESPACE,
                "--token-file",
                str(token_file),
                "--cron",
                "0 0 3 * * *",
                "--pipeline",
                "training",
                "--shards",
                "4",
                "--json",
            ],
        )
        assert result.exit_code == 0, result.output
        scheduled = json.loads(result.stdout)
        job = server.recurring[scheduled["recurring_run_id"]]
        assert job.trigger.cron_schedule.cron == "0 0 3 * * *" and job.status == "ENABLED"
        assert job.no_catchup is True and job.max_concurrency == "1"
        assert job.runtime_config.parameters == {"shards": 4}
        assert job.experiment_id == scheduled["experiment_id"]
        assert server.experiments[job.experiment_id].display_name == "faceops"
        assert server.uploaded_spec(job.pipeline_version_reference.pipeline_version_id)
        assert {r.headers.get("authorization") for r in server.requests} == {f"Bearer {TOKEN}"}

        bad = CliRunner().invoke(cli, ["pipeline", "schedule", "--host", server.url, "--no-auth", "--cron", "0 3 * * *"])
        assert bad.exit_code == 1 and "has 5 field(s)" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize(
    ("server_kwargs", "token", "namespace", "expected"),
    [
        ({"token": TOKEN}, "wrong", None, "answered 401 Unauthorized while checking the API's health"),
        ({"token": TOKEN, "namespace": NAMESPACE}, TOKEN, "team-b", "answered 403 Forbidden while finding or creating"),
        ({"fail_with": 404}, TOKEN, NAMESPACE, "answered 404 Not Found while checking the API's health"),
        ({"fail_with": 500}, TOKEN, NAMESPACE, "failed with HTTP 500"),
    ],
    ids=["401", "403", "404", "500"],
)
def test_refusals_are_clear_errors(kfp_env, monkeypatch, server_kwargs, token, namespace, expected):
    monkeypatch.setenv("FACEOPS_KFP_TOKEN", token)
    with KfpApiServer(**server_kwargs) as server:
        args = ["pipeline", "submit", "--host", server.url, "--pipeline", "training"]
        result = CliRunner().invoke(cli, args + (["--namespace", namespace] if namespace else []))
        assert result.exit_code == 1, result.output
        assert expected in result.output and server.url in result.output, result.output
        assert (f"namespace {namespace}" if namespace else "single-user") in result.output
        assert "Traceback" not in result.output and not server.runs


def test_the_trigger_submits_with_namespace_experiment_and_credentials(kfp_env, tmp_path, monkeypatch):
    from faceops.kfp.pipelines.client import KfpConnection
    from faceops.kfp.pipelines.run import trigger_retraining

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    # the settings a pod gets from the manifests: host and namespace from the environment, a projected token file
    monkeypatch.setenv("KF_PIPELINES_NAMESPACE", NAMESPACE)
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    connection = KfpConnection()
    with KfpApiServer(token=TOKEN, namespace=NAMESPACE) as server:
        monkeypatch.setenv("KF_PIPELINES_ENDPOINT", server.url)
        started = trigger_retraining(
            "drift: 5 of 7 features drifted", "abc123", backend="kfp", connection=connection, experiment="retraining"
        )
        run = server.runs[started["run_id"]]
        assert run.runtime_config.parameters == {"reason": "drift: 5 of 7 features drifted", "data_version": "abc123"}
        assert run.display_name.startswith("retraining: drift")
        assert server.experiments[run.experiment_id].namespace == NAMESPACE
        (upload,) = server.calls("POST", "/pipelines/upload")
        assert list(yaml.safe_load_all(upload.body["uploadfile"][1])) == _compiled("retraining", tmp_path)
        assert {r.headers.get("authorization") for r in server.requests} == {f"Bearer {TOKEN}"}


def test_missing_credentials_are_refused_before_any_call(kfp_env, tmp_path):
    from faceops.kfp.pipelines.client import KfpConnection
    from faceops.kfp.pipelines.run import trigger_retraining

    with KfpApiServer(token=TOKEN, namespace=NAMESPACE) as server:
        with pytest.raises(ConfigError, match=f"{server.url} \\(namespace {NAMESPACE}\\): no credentials"):
            trigger_retraining("drift", backend="kfp", connection=KfpConnection(server.url, NAMESPACE))
        missing = tmp_path / "no-such-token"
        with pytest.raises(ConfigError, match=f"cannot read the token file {missing}"):
            trigger_retraining("drift", backend="kfp", connection=KfpConnection(server.url, NAMESPACE, token_path=missing))
        assert server.requests == []


def test_a_closed_port_is_unavailable(kfp_env):
    from faceops.kfp.pipelines.client import KfpConnection, run_state

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PipelineUnavailable, match=f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}"):
        run_state("some-run", KfpConnection(f"http://127.0.0.1:{port}", auth="none"))


# -- the monitor's trigger, followed across fresh processes ------------------------------------------------------
def _synthetic_monitor_inputs(root: Path) -> tuple[Path, Path, float]:
    """A reference and a request log whose last 20 minutes drifted on every face feature (no model needed)."""
    from faceops.telemetry.reference import FEATURES, Reference
    from faceops.telemetry.requestlog import FaceRecord, RequestLog, RequestRecord

    rng = np.random.default_rng(0)
    n = 80
    base = {
        "det_probability": (0.999, 0.0005),
        "face_size": (120, 10),
        "brightness": (0.5, 0.05),
        "blur": (300, 30),
        "top1_similarity": (0.7, 0.05),
        "margin": (0.3, 0.05),
    }
    features = {k: rng.normal(m, s, n) for k, (m, s) in base.items()}
    features["unknown"] = (rng.random(n) < 0.1).astype(float)
    assert set(features) == set(FEATURES)
    embeddings = rng.normal(size=(n, 512)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    reference = Reference(features, embeddings, {"model_version": "1", "performance": {}, "target_far": 0.01})
    reference_dir = reference.save(root / "reference")
    log = RequestLog(root / "requests.sqlite")
    since = time.time() - 1200
    for i in range(n):
        face = FaceRecord(
            0,
            0.95 - rng.random() * 0.02,
            rng.normal(60, 8),
            rng.normal(0.2, 0.05),
            rng.normal(60, 15),
            "Jane",
            rng.normal(0.45, 0.05),
            rng.normal(0.1, 0.03),
            "unknown" if rng.random() < 0.6 else "known",
            "Jane",
        )
        log.append(RequestRecord(uuid.uuid4().hex, "recognize", 200, 40.0, model_version="1", faces=[face], ts=since + 10 * i))
    log.close()
    return reference_dir, root / "requests.sqlite", since


def _monitor_config(root: Path, reference_dir: Path, log: Path, mlflow_uri: str, kfp_url: str, token: Path, **policy: object) -> Path:
    path = root / f"monitor-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "request_log": str(log),
                "reference_dir": str(reference_dir),
                "tracking_uri": mlflow_uri,
                "log_to_mlflow": False,
                "reports_dir": "reports",  # relative: each process writes into its own working directory
                "state_backend": "mlflow",
                "state_path": "state.sqlite",  # would be the pod's own file: must stay unused
                "policy": {"min_faces": 20, "min_feedback": 10, "cooldown": "1h", **policy},
                "alerts": [{"type": "file", "path": "alerts.jsonl"}],
                "trigger": {
                    "backend": "kfp",
                    "host": kfp_url,
                    "namespace": NAMESPACE,
                    "token_path": str(token),
                    "experiment": "faceops-retraining",
                    "arguments": {"shards": 2},
                },
            }
        )
    )
    return path


def _monitor_process(config: Path, since: float, workdir: Path) -> dict:
    """``faceops monitor run`` in a fresh process and an empty working directory with its own HOME."""
    workdir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEOPS_KFP", "KF_PIPELINES"))}
    env.update(HOME=str(workdir), FACEOPS_OUTPUT_DIR=str(workdir / "outputs"))
    done = subprocess.run(
        [str(Path(sys.executable).with_name("faceops")), "monitor", "run", "-c", str(config), "--since", str(since), "--json"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (workdir / "state.sqlite").exists()  # the state went to MLflow
    alerts = workdir / "alerts.jsonl"
    return {
        "run": json.loads(done.stdout),
        "alerts": [json.loads(x) for x in alerts.read_text().splitlines()] if alerts.exists() else [],
    }


@pytest.mark.e2e
def test_the_monitor_follows_the_run_it_started(kfp_env, tmp_path, start_mlflow_server):
    reference_dir, log, since = _synthetic_monitor_inputs(tmp_path)
    (tmp_path / "mlflow").mkdir()
    mlflow_uri, mlflow_proc = start_mlflow_server(tmp_path / "mlflow")
    try:
        _follow(tmp_path, reference_dir, log, since, mlflow_uri)
    finally:
        stop_server(mlflow_proc)


def _follow(tmp_path: Path, reference_dir: Path, log: Path, since: float, mlflow_uri: str) -> None:
    from faceops.monitoring.config import load_monitor_config
    from faceops.monitoring.monitor import run_once
    from faceops.monitoring.state_mlflow import MlflowState

    token = tmp_path / "token"
    token.write_text(TOKEN)
    with KfpApiServer(token=TOKEN, namespace=NAMESPACE) as server:
        config = _monitor_config(tmp_path, reference_dir, log, mlflow_uri, server.url, token)

        first = _monitor_process(config, since, tmp_path / "pod-1")
        assert first["run"]["action"] == "retrain", first["run"]["reasons"]
        (run_id,) = server.runs
        assert first["run"]["trigger"]["run_id"] == run_id
        run = server.runs[run_id]
        assert run.runtime_config.parameters["shards"] == 2 and "drift" in run.runtime_config.parameters["reason"]
        assert server.experiments[run.experiment_id].display_name == "faceops-retraining"
        assert {r.headers.get("authorization") for r in server.requests} == {f"Bearer {TOKEN}"}

        server.set_run_state(run_id, "FAILED", "step 'train' failed: OOMKilled")
        second = _monitor_process(config, since, tmp_path / "pod-2")
        assert second["run"]["action"] == "cooldown", second["run"]["reasons"]
        reasons = " | ".join(second["run"]["reasons"])
        assert f"the last retraining (run {run_id}" in reasons and "ended FAILED: step 'train' failed" in reasons
        assert "cooldown: a retraining started" in reasons and "FAILED: step 'train' failed" in reasons
        (alert,) = second["alerts"]
        assert alert["severity"] == "error" and f"retraining run {run_id} FAILED" in alert["summary"]
        assert alert["retraining"]["state"] == "FAILED"
        assert len(server.runs) == 1 and server.calls("GET", f"/runs/{run_id}")
        with MlflowState(mlflow_uri) as state:  # the state recorded what the server said
            (started,) = state.triggers()
            assert (started["status"], started["run_state"]) == ("started", "FAILED")
            assert "OOMKilled" in started["run_error"] and started["detail"]["run_id"] == run_id
            assert [d["action"] for d in state.decisions()] == ["cooldown", "retrain"]

        # after the cooldown a new retraining may start; while it runs, no other starts
        short = load_monitor_config(_monitor_config(tmp_path, reference_dir, log, mlflow_uri, server.url, token, cooldown="1s"))
        short = short.model_copy(update={"reports_dir": tmp_path / "pod-3"})
        third = run_once(short, since=since, sinks=[])
        assert third.action == "retrain", third.reasons
        assert len(server.runs) == 2
        newest = third.trigger["run_id"]
        server.set_run_state(newest, "RUNNING")
        fourth = run_once(short, since=since, sinks=[])
        assert fourth.action == "cooldown" and len(server.runs) == 2
        assert any(r.startswith(f"a retraining is still running: run {newest} (RUNNING") for r in fourth.reasons)
        server.set_run_state(newest, "SUCCEEDED")
        fifth = run_once(short, since=since, sinks=[])
        assert fifth.action == "retrain" and len(server.runs) == 3
        assert fifth.retraining["state"] == "SUCCEEDED" and fifth.retraining["newly_final"] is True

    listed = CliRunner().invoke(cli, ["monitor", "decisions", "-c", str(config), "--json"])
    assert listed.exit_code == 0, listed.output
    assert [d["action"] for d in json.loads(listed.stdout)] == ["retrain", "cooldown", "retrain", "cooldown", "retrain"]
