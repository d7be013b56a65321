"""Shared fixtures: the real images in ../shared and one face recognizer per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEOPS_SHARED_DIR", ROOT.parent / "shared")).resolve()
DATASETS = SHARED / "datasets"
WEIGHTS = SHARED / "weights" / "inception_resnet_v1_casia-webface.pt"

os.environ.setdefault("FACEOPS_WEIGHTS", str(WEIGHTS))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def pytest_configure(config: pytest.Config) -> None:
    if not DATASETS.is_dir():
        raise pytest.UsageError(f"{DATASETS} not found: the tests read real images from ../shared")


@pytest.fixture(scope="session")
def datasets() -> Path:
    return DATASETS


@pytest.fixture(scope="session")
def lfw() -> Path:
    return DATASETS / "lfw"


@pytest.fixture(scope="session")
def recognizer():
    """The default face recognizer (MTCNN + the shared CASIA-WebFace weights), built once."""
    from faceops.face.recognizer import FaceRecognizer

    return FaceRecognizer()


def wait_for_mlflow(uri: str, proc, log_path: Path, timeout: float = 240.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until the ``mlflow server`` process ``proc`` answers ``/health`` at ``uri``; fail with the end of its
    log if it exits or takes longer than ``timeout`` (a busy 2-core machine takes minutes to import mlflow)."""
    import time

    import requests

    deadline = time.time() + timeout
    while True:
        try:
            if requests.get(uri + "/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start: {log_path.read_text()[-3000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def start_mlflow_server():
    """Start real ``mlflow server`` processes on 127.0.0.1 (SQLite backend, artifacts in a folder).

    Returns a function ``start(where) -> (uri, process)``; every server started is stopped at the end of the
    session (a test may also stop its own earlier, e.g. to check behaviour when MLflow goes away).
    """
    import socket
    import subprocess
    import sys


    started: list[tuple[subprocess.Popen, object]] = []

    def start(where: Path, timeout: float = 240.0) -> tuple[str, subprocess.Popen]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = (where / "server.log").open("w")
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{where / 'mlflow.db'}",
             "--artifacts-destination", str(where / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        )
        started.append((proc, log))
        uri = f"http://127.0.0.1:{port}"
        wait_for_mlflow(uri, proc, where / "server.log", timeout)
        return uri, proc

    yield start
    for proc, log in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=60)  # reaped: no "subprocess still running" warning at exit
        log.close()  # type: ignore[attr-defined]
