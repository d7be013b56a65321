"""The training pipeline as a cluster runs it: each step in its own empty folder, sharing only artifacts, S3, MLflow.

kfp.local's SubprocessRunner starts every step as ``sh -c '... python3 -m kfp.dsl.executor_main ...'`` (``sh``
looked up on ``PATH``). A ``sh`` placed first on ``PATH`` makes each step a stand-in for a pod: a fresh working
directory and HOME (and TMPDIR) of its own, no host-path settings (``FACEOPS_CACHE_DIR``, ``FACEOPS_OUTPUT_DIR``,
...) and the real ``PATH`` back, then the real ``/bin/sh``. Nothing of kfp is patched.

What the steps share is what pods share: kfp.local's pipeline root (the artifact store), a moto S3 server on
127.0.0.1 (the DVC remote, the cache store and the embedding weights) and an ``mlflow server`` on 127.0.0.1 whose
artifacts go to that S3. The only host path a step is given is the source folder it imports (an input).

Measured: 508 s for the run (about 10 min with the servers' start) on 2 cores that other jobs kept at a load of
about 11; most of it is each step importing torch and fetching the 94 MB weights from S3 for itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for_mlflow

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

BUCKET = "faceops"
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
WEIGHTS_KEY = "weights/inception_resnet_v1_casia-webface.pt"

SHIM = """#!/bin/sh
# A pod stand-in: every step starts in an empty folder with its own HOME, and no host-path settings.
step=""; prev=""
for arg in "$@"; do [ "$prev" = "--function_to_execute" ] && step="$arg"; prev="$arg"; done
dir=$(/bin/mktemp -d "{root}/step-XXXXXX")
mkdir -p "$dir/home" "$dir/tmp"
echo "$step $dir" >> "{root}/steps.txt"
cd "$dir" || exit 90
export HOME="$dir/home" TMPDIR="$dir/tmp" PATH="{path}"
unset FACEOPS_CACHE_DIR FACEOPS_OUTPUT_DIR FACEOPS_MLFLOW_ARTIFACTS FACEOPS_MLFLOW_TRACKING_URI \\
  FACEOPS_SHARED_DIR FACEOPS_PROGRESS_DIR FACEOPS_DVC_LOCAL_REMOTE PYTHONPATH
exec /bin/sh "$@"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[str, object]]:
    """A moto S3 server on 127.0.0.1 with the bucket and the weights object."""
    import boto3
    from moto.server import ThreadedMotoServer

    from tests.conftest import WEIGHTS

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=BUCKET)
    client.upload_file(str(WEIGHTS), BUCKET, WEIGHTS_KEY)
    yield endpoint, client
    server.stop()


@pytest.fixture(scope="module")
def mlflow_server(s3: tuple[str, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1: SQLite backend, artifacts proxied to s3://faceops/mlflow on moto."""

    where = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    env = {**os.environ, **KEYS, "MLFLOW_S3_ENDPOINT_URL": s3[0], "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = (where / "server.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{where / 'mlflow.db'}",
         "--artifacts-destination", f"s3://{BUCKET}/mlflow"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=where,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_for_mlflow(uri, proc, where / "server.log")
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _keys(client: object, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)  # type: ignore[attr-defined]
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_training_pipeline_with_steps_that_share_nothing_but_artifacts_s3_and_mlflow(
    s3: tuple[str, object],
    mlflow_server: str,
    source_tree: Path,
    smoke_config: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from faceops.kfp.pipelines.run import run_local
    from mlflow import MlflowClient

    from faceops.registry import MODEL_NAME

    endpoint, client = s3
    steps_root = tmp_path / "pods"
    steps_root.mkdir()
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sh").write_text(SHIM.format(root=steps_root, path=os.environ["PATH"]))
    (shim / "sh").chmod(0o755)
    # nothing of the test's own workspace is visible to the steps through settings
    monkeypatch.delenv("FACEOPS_CACHE_DIR", raising=False)
    arguments = {
        "repo": "",  # a fresh repository in the step's own folder
        "source": str(source_tree),
        "remote": f"s3://{BUCKET}/dvc",
        "store": f"s3://{BUCKET}/cache",
        "tracking_uri": mlflow_server,
        "run_config": smoke_config,
        "validation": {"face_sample": 4},
        "shards": 2,
        "optimize_method": "",  # the optimize step is run by test_local_run.py; here it says it has nothing to do
    }
    env = {
        **KEYS,
        "AWS_ENDPOINT_URL": endpoint,
        "FACEOPS_WEIGHTS": f"s3://{BUCKET}/{WEIGHTS_KEY}",
        "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}",
    }
    started = time.monotonic()
    result = run_local("training", arguments, pipeline_root=tmp_path / "root", env=env)
    seconds = time.monotonic() - started
    print(f"isolated training run: {seconds:.0f} s")

    assert result["status"] == "SUCCEEDED"
    statuses = {s["name"]: s["status"] for s in result["steps"]}
    assert {"data-version", "validate", "preprocess-shard [0]", "preprocess-shard [1]", "preprocess-merge",
            "train", "evaluate", "register-and-gate", "promote"} <= set(statuses)  # fmt: skip
    assert set(statuses.values()) == {"ok"}
    # every step ran in a folder of its own (the shim's log), each fetching what it needed for itself
    ran = [line.split(" ", 1) for line in (steps_root / "steps.txt").read_text().splitlines()]
    names = [name for name, _ in ran]
    assert len({folder for _, folder in ran}) == len(ran) >= 10
    assert names.count("preprocess_shard") == 2 and {"train", "evaluate", "register_and_gate"} <= set(names)
    folders = {name: Path(folder) for name, folder in ran}
    for step in ("validate", "train", "evaluate", "register_and_gate"):
        cache = folders[step] / "outputs" / "cache"
        assert list(cache.glob("data-*/data/manifest.csv")), f"{step} fetched no data version"
    # the weights came from S3 into the steps that embed faces
    assert list((folders["train"] / "outputs" / "cache" / "downloads").glob("*/*.pt"))
    # a shard fetched only its own images (of the 25)
    shard_images = list(folders["preprocess_shard"].glob("outputs/cache/data-*/data/*/*.jpg"))
    assert 0 < len(shard_images) < 25

    # S3 holds the DVC remote, the shared crops and trunk caches, and MLflow's artifacts
    assert any(k.endswith(".dir") for k in _keys(client, "dvc/files/md5/"))
    cache_keys = _keys(client, "cache/")
    assert any(k.startswith("cache/crops-") and k.endswith(".npz") for k in cache_keys)
    assert any(k.startswith("cache/trunk-") for k in cache_keys)
    # the champion alias points at the new version, whose artifacts are in S3
    # both URIs explicit: mlflow's process-wide registry URI may still name another test's (stopped) server
    mlflow = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    champion = mlflow.get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.version == "1"
    mlflow_keys = _keys(client, "mlflow/")
    assert any(champion.run_id in k for k in mlflow_keys)
    assert any("bundle" in k for k in mlflow_keys)
