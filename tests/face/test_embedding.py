"""Embeddings: weights resolution never falls back to random weights; outputs are batched unit vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceops.errors import WeightsNotFound
from faceops.face.embedding import Embedder, load_backbone
from faceops.settings import get_settings


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch):
    """Settings re-read from a modified environment, restored afterwards."""
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_missing_weights_file_names_the_setting(fresh_settings, tmp_path: Path) -> None:
    fresh_settings.setenv("FACEOPS_WEIGHTS", str(tmp_path / "nowhere.pt"))
    with pytest.raises(WeightsNotFound, match="FACEOPS_WEIGHTS"):
        load_backbone()


def test_no_weights_and_no_network_is_a_clear_error(fresh_settings, tmp_path: Path) -> None:
    fresh_settings.delenv("FACEOPS_WEIGHTS", raising=False)
    fresh_settings.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached there
    fresh_settings.setenv("FACEOPS_PRETRAINED", "vggface2")
    # No network here; for a machine that has one, make the download fail the same way.
    fresh_settings.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    fresh_settings.setenv("https_proxy", "http://127.0.0.1:9")
    with pytest.raises(WeightsNotFound, match="set FACEOPS_WEIGHTS") as info:
        load_backbone()
    assert "vggface2" in str(info.value)


def test_a_file_that_is_not_a_state_dict(fresh_settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(WeightsNotFound, match="not an InceptionResnetV1 state dict"):
        load_backbone(bad)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    with pytest.raises(WeightsNotFound, match="not an InceptionResnetV1"):
        load_backbone(text)


def test_embeddings_are_batched_unit_vectors(recognizer, lfw: Path) -> None:
    paths = sorted((lfw / "Serena_Williams").glob("*.jpg"))[:5]
    crops, _, errors = recognizer.subject_crops(paths)
    assert not errors
    embedder: Embedder = recognizer.embedder
    batch = embedder.embed(crops)
    assert batch.shape == (5, 512) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    single = np.stack([embedder.embed(c) [0] for c in crops])
    assert np.allclose(batch, single, atol=1e-4), "batching must not change embeddings"
    same = batch @ batch.T
    assert same[np.triu_indices(5, 1)].min() > 0.4, "five photos of one person are alike"


def test_flip_average_is_mirror_invariant(recognizer, lfw: Path) -> None:
    crops, _, _ = recognizer.subject_crops([lfw / "Colin_Powell" / "Colin_Powell_0001.jpg"])
    flip = Embedder(recognizer.embedder.config.model_copy(update={"flip_average": True}),
                    model=recognizer.embedder.model, model_id="x")
    a, b = flip.embed(crops), flip.embed(crops[:, :, ::-1].copy())
    assert float(a[0] @ b[0]) > 0.9999
