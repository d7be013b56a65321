"""The dev overlay's MLflow server, started for real with the arguments and environment its Deployment renders to:
only the PostgreSQL backend is swapped for SQLite (no PostgreSQL here) and MinIO for an S3 API server (moto) on
127.0.0.1. It must accept the Host header of MLFLOW_TRACKING_URI, refuse others, and put artifacts in the bucket."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import wait_for_mlflow
from tests.infra import checks
from tests.infra.conftest import Rendered

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # an MLflow server start: a minute on a busy machine


def _container_env(r: Rendered, container: dict) -> dict[str, str]:
    env: dict[str, str] = {}
    for var in container["env"]:
        ref = var["valueFrom"]
        if "configMapKeyRef" in ref:
            env[var["name"]] = r.get("ConfigMap", ref["configMapKeyRef"]["name"])["data"][ref["configMapKeyRef"]["key"]]
        else:
            env[var["name"]] = checks.decoded(r.get("Secret", ref["secretKeyRef"]["name"]))[ref["secretKeyRef"]["key"]]
    return env


def test_the_dev_mlflow_server_serves_in_cluster_hosts_and_stores_artifacts_in_s3(
    rendered: dict[str, Rendered], s3_endpoint: str, tmp_path: Path
) -> None:
    import boto3
    from mlflow.tracking import MlflowClient

    r = rendered["overlays/dev"]
    spec = checks.pod_spec(r.get("Deployment", "faceops-mlflow"))
    assert spec is not None
    container = spec["containers"][0]
    env = _container_env(r, container)
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    options = dict(a.removeprefix("--").split("=", 1) for a in args[1:])
    assert args[0] == "server"
    assert options["backend-store-uri"].startswith(f"postgresql+psycopg://{env['POSTGRES_USER']}:")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options |= {"host": "127.0.0.1", "port": str(port), "workers": "1", "backend-store-uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env["MLFLOW_S3_ENDPOINT_URL"] = s3_endpoint
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    bucket, _, prefix = env["ARTIFACTS_DESTINATION"].removeprefix("s3://").partition("/")
    s3.create_bucket(Bucket=bucket)  # what the faceops-create-buckets Job does
    server_env = (
        {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
        | env
        | {"MLFLOW_DISABLE_TELEMETRY": "true", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    command = [str(Path(sys.executable).with_name("mlflow")), "server", *(f"--{k}={v}" for k, v in options.items())]
    with (tmp_path / "server.log").open("w") as log:
        # its own process group: the server's workers stop with it
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=server_env, start_new_session=True)
        try:
            uri = f"http://127.0.0.1:{port}"
            wait_for_mlflow(uri, proc, tmp_path / "server.log")
            search = uri + "/api/2.0/mlflow/experiments/search?max_results=1"
            in_cluster = r.get("ConfigMap", "faceops-endpoints")["data"]["MLFLOW_TRACKING_URI"].removeprefix("http://")
            fqdn = f"faceops-mlflow.{r.get('Service', 'faceops-mlflow')['metadata']['namespace']}.svc.cluster.local:5000"
            for host in (in_cluster, fqdn, "localhost:5000"):
                assert requests.get(search, headers={"Host": host}, timeout=10).status_code == 200, host
            assert requests.get(search, headers={"Host": "rebind.example.com"}, timeout=10).status_code == 403

            client = MlflowClient(tracking_uri=uri)
            experiment = client.create_experiment("faceops-infra-check")
            run = client.create_run(experiment)
            client.log_text(run.info.run_id, "hello", "check/hello.txt")
            client.set_terminated(run.info.run_id)
            assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied: clients need no S3 access
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    assert any(k.startswith(f"{prefix}/") and k.endswith(f"{run.info.run_id}/artifacts/check/hello.txt") for k in keys), keys
    body = s3.get_object(Bucket=bucket, Key=next(k for k in keys if k.endswith("hello.txt")))["Body"].read()
    assert body == b"hello"
