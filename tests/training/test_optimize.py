"""`faceops optimize` and the parity gate, on the real weights and real LFW photos (12 pairs of each of folds 1-4).

The gate is run with a target FAR of 0.1 here: 48 pairs hold 24 impostors, too few to show a FAR of 1e-3.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from faceops.cli import cli
from faceops.errors import FaceOpsError, InvalidModelFile
from faceops.evaluation.bundle import ModelBundle
from faceops.evaluation.parity import ParityConfig, check_parity
from faceops.optimize import build_variant, log_optimization

SMALL = ["--lfw-folds", "1-4", "--pairs-per-fold", "12", "--target-far", "0.1"]


@pytest.fixture(scope="module")
def champion() -> ModelBundle:
    return ModelBundle.pretrained()


@pytest.fixture(scope="module")
def champion_dir(champion: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return champion.save(tmp_path_factory.mktemp("champion") / "bundle")


@pytest.fixture(scope="module")
def parity(lfw: Path) -> ParityConfig:
    return ParityConfig(lfw_pairs=lfw / "pairs.txt", lfw_root=lfw, folds=[1, 2, 3, 4], pairs_per_fold=12, target_far=0.1)


@pytest.fixture(scope="module")
def mobilefacenet(champion: ModelBundle) -> ModelBundle:
    return build_variant(champion, "mobilefacenet")


def _crops(lfw: Path, champion: ModelBundle) -> np.ndarray:
    from faceops.face.recognizer import FaceRecognizer

    photos = [lfw / "Hans_Blix" / f"Hans_Blix_000{i}.jpg" for i in (1, 2)] + [lfw / "Laura_Bush" / "Laura_Bush_0001.jpg"]
    crops, faces, _ = FaceRecognizer(champion.preprocess).subject_crops(photos)
    assert all(f is not None for f in faces)
    return crops


def test_onnx_variant_matches_torch_is_admitted_and_registered(
    champion: ModelBundle, champion_dir: Path, lfw: Path, local_store: str, tmp_path: Path
) -> None:
    from faceops import registry

    out = tmp_path / "onnx"
    result = CliRunner().invoke(
        cli, ["optimize", "--from", str(champion_dir), "--method", "onnx", *SMALL, "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["admitted"] and summary["reasons"] == []
    assert summary["backend"] == "onnxruntime" and summary["family"] == "inception_resnet_v1"
    assert summary["variant"]["accuracy"] == pytest.approx(summary["champion"]["accuracy"], abs=1e-9)
    versions = registry.list_versions(local_store)
    assert [v["version"] for v in versions] == [summary["version"]]
    assert versions[0]["aliases"] == ["challenger"] and versions[0]["tags"]["method"] == "onnx"

    variant = registry.load_bundle("models:/faceops@challenger", local_store)
    assert variant.backend == "onnxruntime" and variant.preprocess.embedder.backend == "onnxruntime"
    assert variant.threshold == pytest.approx(summary["threshold"])
    crops = _crops(lfw, champion)
    expected = champion.recognizer().embedder.embed(crops)
    got = variant.recognizer().embedder.embed(crops)
    assert np.einsum("nd,nd->n", expected, got).min() > 0.9999

    # `verify --model` uses the variant's preprocessing and its recalibrated threshold
    photos = [str(lfw / "Hans_Blix" / f"Hans_Blix_000{i}.jpg") for i in (1, 2)]
    verdict = CliRunner().invoke(cli, ["verify", *photos, "--model", str(out / "bundle"), "--json"])
    assert verdict.exit_code == 0, verdict.output
    payload = json.loads(verdict.stdout)
    assert payload["threshold"] == pytest.approx(variant.threshold)
    assert payload["similarity"] == pytest.approx(float(expected[0] @ expected[1]), abs=1e-4)


def test_a_broken_variant_is_refused_with_reasons_and_nothing_registered(
    champion: ModelBundle, parity: ParityConfig, cache_dir: Path, local_store: str
) -> None:
    from faceops import registry

    noisy = copy.deepcopy(champion.torch_module)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in noisy.parameters():
            if param.ndim > 1:  # conv and linear weights: noise of their own size
                param.add_(torch.randn(param.shape, generator=generator) * param.std())
    broken = ModelBundle(noisy, champion.preprocess, metadata={"method": "noise", "file_bytes": 0})
    decision = check_parity(champion, broken, parity, cache_dir=cache_dir)
    assert not decision.admitted
    assert any("accuracy on LFW pairs drops" in r for r in decision.reasons), decision.reasons
    assert all(any(c.isdigit() for c in r) for r in decision.reasons)  # each reason gives its numbers
    assert log_optimization(broken, decision, "test") is None
    assert registry.list_versions(local_store) == []


def test_calibration_images_without_faces_are_a_clear_error_and_nothing_is_registered(
    champion_dir: Path, local_store: str, tmp_path: Path
) -> None:
    from PIL import Image

    from faceops import registry

    blanks = tmp_path / "blank"
    blanks.mkdir()
    for i in range(2):
        Image.new("RGB", (200, 200), (120 + i, 120, 120)).save(blanks / f"blank{i}.jpg")
    result = CliRunner().invoke(
        cli, ["optimize", "--from", str(champion_dir), "--method", "int8", "--calibration", str(blanks), *SMALL]
    )
    assert result.exit_code == 1
    assert "no faces found in the 2 calibration image(s)" in result.output
    assert registry.list_versions(local_store) == []


def test_mobilefacenet_bundle_round_trips(mobilefacenet: ModelBundle, tmp_path: Path) -> None:
    assert mobilefacenet.family == "mobilefacenet" and mobilefacenet.backend == "onnxruntime"
    assert mobilefacenet.preprocess.align.image_size == 112 and mobilefacenet.preprocess.align.template == "arcface"
    loaded = ModelBundle.load(mobilefacenet.save(tmp_path / "mfn"))
    assert loaded.family == "mobilefacenet" and loaded.preprocess == mobilefacenet.preprocess
    assert loaded.model_id == mobilefacenet.model_id and loaded.metadata["method"] == "mobilefacenet"
    crops = np.random.default_rng(0).integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    a, b = mobilefacenet.recognizer().embedder.embed(crops), loaded.recognizer().embedder.embed(crops)
    assert a.shape == (3, 128)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_corrupted_model_onnx_is_refused_clearly(mobilefacenet: ModelBundle, tmp_path: Path) -> None:
    import hashlib

    folder = mobilefacenet.save(tmp_path / "mfn")
    model = folder / "model.onnx"
    model.write_bytes(model.read_bytes()[: len(model.read_bytes()) // 2])
    with pytest.raises(InvalidModelFile, match="checksum differs"):
        ModelBundle.load(folder)
    meta = json.loads((folder / "bundle.json").read_text())  # damage that the record does not catch
    meta["embedder"]["sha256"] = hashlib.sha256(model.read_bytes()).hexdigest()
    (folder / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidModelFile, match="is not a loadable ONNX model"):
        ModelBundle.load(folder)


def test_an_onnx_input_size_that_differs_from_the_preprocessing_is_refused(
    mobilefacenet: ModelBundle, tmp_path: Path
) -> None:
    folder = mobilefacenet.save(tmp_path / "mfn")
    meta = json.loads((folder / "bundle.json").read_text())
    meta["preprocess"]["align"]["image_size"] = 160
    (folder / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidModelFile, match="takes 112x112 crops but the bundle's preprocessing makes 160x160"):
        ModelBundle.load(folder)


def test_onnx_needs_a_torch_champion(mobilefacenet: ModelBundle) -> None:
    with pytest.raises(FaceOpsError, match="needs a champion with a PyTorch network"):
        build_variant(mobilefacenet, "onnx")


def test_the_gate_names_each_failed_condition_with_its_numbers(lfw: Path) -> None:
    from faceops.evaluation.parity import decide_parity, verification_figures

    rng = np.random.default_rng(0)
    labels = np.tile([1] * 300 + [0] * 300, 4)
    folds = np.repeat([1, 2, 3, 4], 600)
    good = np.where(labels == 1, rng.normal(0.7, 0.1, labels.size), rng.normal(0.0, 0.1, labels.size))
    champion = {"lfw": verification_figures(good, labels, folds, 1e-3)}
    assert champion["lfw"]["heldout_impostors"] == 1200 and champion["lfw"]["accuracy"] > 0.99
    config = ParityConfig(lfw_pairs=lfw / "pairs.txt", lfw_root=lfw)
    assert decide_parity(champion, champion, config) == (True, [])

    worse = good + np.where(labels == 1, rng.normal(0, 0.25, labels.size), 0)  # genuine pairs blur into impostors
    loose = {"lfw": {**verification_figures(worse, labels, folds, 1e-3)}}
    loose["lfw"].update(heldout_false_accepts=9, heldout_far=9 / 1200, heldout_far_p_value=0.0004)
    admitted, reasons = decide_parity(champion, loose, config)
    assert not admitted and len(reasons) == 3
    assert reasons[0].startswith("accuracy on LFW pairs drops") and "more than 0.3" in reasons[0]
    assert reasons[1].startswith("TAR at FAR 0.001 on LFW pairs drops") and "more than 0.5" in reasons[1]
    assert "9 false accepts of 1200 impostors" in reasons[2]

    data = {"accuracy": 0.9, "tar_at_far": 0.8, "heldout_far": 0.0, "heldout_false_accepts": 0,
            "heldout_impostors": 500, "heldout_far_p_value": 1.0}
    admitted, reasons = decide_parity({**champion, "data": data}, {**champion, "data": {**data, "accuracy": 0.89}}, config)
    assert not admitted and reasons == [
        "accuracy on the data version drops 1.00 points (90.00% -> 89.00%), more than 0.3"
    ]
