"""Serving fixtures: a real model bundle on disk, API keys, and apps built on them (real MTCNN + embedder)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.serving.serving_helpers import make_settings

BUNDLE_THRESHOLD = 0.37  # not the core default: shows the service takes the threshold from the model


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pretrained model saved as a bundle with its own threshold (what MLflow would hand the service)."""
    from faceops.evaluation.bundle import ModelBundle

    bundle = ModelBundle.pretrained()
    bundle.threshold, bundle.target_far = BUNDLE_THRESHOLD, 1e-3
    return bundle.save(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def api_key() -> str:
    from faceops.serving.security import new_api_key

    return new_api_key()


@pytest.fixture(scope="session")
def key_header(api_key: str) -> dict[str, str]:
    return {"X-API-Key": api_key}


@pytest.fixture(scope="module")
def client(bundle_dir: Path, api_key: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One app per test module, served in-process (lifespan included)."""
    from faceops.serving.app import create_app
    from fastapi.testclient import TestClient

    settings = make_settings(
        bundle_dir, tmp_path_factory.mktemp("state"), api_key, max_body_bytes=2 * 1024 * 1024
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


# -- real photos ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def people(lfw: Path) -> dict[str, list[Path]]:
    """Four LFW people with many photos each: the first two of each enrol, the others query."""
    names = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder"]
    return {n: sorted((lfw / n).glob("*.jpg"))[:4] for n in names}


@pytest.fixture(scope="session")
def stranger(lfw: Path) -> Path:
    return lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"


@pytest.fixture(scope="session")
def no_face_jpeg(datasets: Path) -> bytes:
    """A real photo crop without people (poker chips), as JPEG bytes."""
    out = io.BytesIO()
    Image.open(datasets / "multiface" / "t1.jpg").convert("RGB").crop((300, 620, 1100, 880)).save(out, "JPEG")
    return out.getvalue()


# -- PostgreSQL (the shared store of replicas) -----------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real PostgreSQL server on 127.0.0.1 for the session (``new_database()`` gives each test its own)."""
    from tests.serving.pg_server import running_server

    with running_server() as server:
        yield server
