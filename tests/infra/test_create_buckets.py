"""The dev overlay's bucket Job, run for real: its script, with the arguments and environment the rendered Job
gives it, against an S3 API server (moto) on 127.0.0.1 in place of MinIO."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra import checks
from tests.infra.conftest import Rendered

pytestmark = pytest.mark.integration


def _job_command(r: Rendered, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """The Job's command line with $(VAR)s expanded from its env, the script written out from its ConfigMap,
    and the environment the pod would have."""
    job = r.get("Job", "faceops-create-buckets")
    spec = checks.pod_spec(job)
    assert spec is not None
    container = spec["containers"][0]
    env: dict[str, str] = {}
    for var in container["env"]:
        ref = var["valueFrom"]
        if "configMapKeyRef" in ref:
            env[var["name"]] = r.get("ConfigMap", ref["configMapKeyRef"]["name"])["data"][ref["configMapKeyRef"]["key"]]
        else:
            env[var["name"]] = checks.decoded(r.get("Secret", ref["secretKeyRef"]["name"]))[ref["secretKeyRef"]["key"]]
    mount = container["volumeMounts"][0]
    config_map = next(v["configMap"]["name"] for v in spec["volumes"] if v["name"] == mount["name"])
    for name, text in r.get("ConfigMap", config_map)["data"].items():
        (tmp_path / name).write_text(text)
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    assert args[0] == "python" and args[1].startswith(mount["mountPath"] + "/")
    return [sys.executable, str(tmp_path / Path(args[1]).name), *args[2:]], env


def _remove_bucket(endpoint: str, env: dict[str, str], name: str) -> None:
    import boto3

    s3 = boto3.resource(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    bucket = s3.Bucket(name)
    if bucket.creation_date is not None:
        bucket.objects.all().delete()
        bucket.delete()


def test_the_job_creates_every_bucket_the_overlay_names_once(rendered: dict[str, Rendered], s3_endpoint: str, tmp_path: Path) -> None:
    import boto3

    command, env = _job_command(rendered["overlays/dev"], tmp_path)
    assert env["AWS_ENDPOINT_URL"] == "http://faceops-minio:9000"
    env["AWS_ENDPOINT_URL"] = s3_endpoint  # MinIO's Service name does not resolve here
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | env
    _remove_bucket(s3_endpoint, env, "faceops")  # the S3 server is shared: another test may have made it
    first = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"bucket faceops created at {s3_endpoint}"]
    again = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=60)
    assert again.stdout.splitlines() == [f"bucket faceops exists at {s3_endpoint}"]
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    # the S3 server is shared with other tests (their buckets are there too): "faceops" is there, once
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]].count("faceops") == 1
    # the buckets of every s3:// URI in the overlay: the store, the DVC remote and MLflow's artifacts
    assert {a.split("/")[2] for a in command[2:]} == {"faceops"} and len(command[2:]) == 3


def test_the_job_fails_naming_an_unreachable_endpoint(rendered: dict[str, Rendered], tmp_path: Path) -> None:
    command, env = _job_command(rendered["overlays/dev"], tmp_path)
    env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # discard port: nothing listens
    run_env = (
        {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        | env
        | {"AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard"}
    )
    done = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "cannot reach the S3 endpoint http://127.0.0.1:9" in done.stderr


def test_the_job_refuses_a_uri_that_is_not_s3(tmp_path: Path, rendered: dict[str, Rendered]) -> None:
    command, env = _job_command(rendered["overlays/dev"], tmp_path)
    done = subprocess.run([*command[:2], "/data/cache"], env=os.environ | env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "not an s3://bucket/... URI: '/data/cache'" in done.stderr
