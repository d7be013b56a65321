"""Shared fixtures: the real images in ../shared and one face pipeline per test session."""

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
def pipeline():
    """The default face pipeline (MTCNN + the shared CASIA-WebFace weights), built once."""
    from faceops.pipeline import FacePipeline

    return FacePipeline()
