"""The service's detector backend (MTCNN's nets on ONNX Runtime or PyTorch) and its per-stage timing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.serving.serving_helpers import make_settings


@pytest.fixture(scope="module")
def answers(bundle_dir: Path, api_key: str, tmp_path_factory: pytest.TempPathFactory, people: dict[str, list[Path]]):  # type: ignore[no-untyped-def]
    """For each detector backend: the recognize answer for one photo and the /metrics text after it."""
    from faceops.serving.app import create_app
    from fastapi.testclient import TestClient

    photo = people["Tony_Blair"][2].read_bytes()
    out = {}
    for backend in ("torch", "onnxruntime"):
        settings = make_settings(bundle_dir, tmp_path_factory.mktemp(f"state-{backend}"), api_key, detector_backend=backend)
        with TestClient(create_app(settings)) as client:
            headers = {"X-API-Key": api_key}
            assert client.app.state.ctx.service.state.model.recognizer.detector.backend == backend  # type: ignore[attr-defined]
            r = client.post("/v1/recognize", files={"image": ("q.jpg", photo)}, headers=headers)
            assert r.status_code == 200, r.text
            out[backend] = (r.json(), client.get("/metrics", headers=headers).text)
    return out


def test_both_detector_backends_find_the_same_face(answers) -> None:  # type: ignore[no-untyped-def]
    torch_faces, onnx_faces = answers["torch"][0]["faces"], answers["onnxruntime"][0]["faces"]
    assert len(torch_faces) == len(onnx_faces) >= 1
    for a, b in zip(torch_faces, onnx_faces, strict=True):
        np.testing.assert_allclose(a["box"], b["box"], atol=0.05)


def test_metrics_time_each_request_stage(answers) -> None:  # type: ignore[no-untyped-def]
    for _, metrics in answers.values():
        for stage in ("decode", "detect", "embed", "search", "log"):
            assert f'faceops_stage_seconds_count{{stage="{stage}"}} 1.0' in metrics, stage
