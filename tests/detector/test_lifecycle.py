"""The detector in the life cycle: named by the preprocessing, carried by the bundle, registered, gated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from faceops.detector.detect import NetDetector, file_sha256
from faceops.detector.gate import DetectorGateConfig, decide_detector
from faceops.detector.model import FaceNet
from faceops.detector.train import DetectorTrainConfig, TrainResult, save_checkpoint
from faceops.errors import ConfigError, GalleryError, InvalidModelFile
from faceops.evaluation.bundle import ModelBundle
from faceops.face.config import DetectorConfig, NetDetectorSettings, PreprocessConfig
from faceops.face.detection import Detector, FaceDetector, build_detector
from faceops.face.gallery import Gallery
from faceops.face.images import load_image

# Fingerprints of configs saved before the detector kind existed (computed with the previous config module).
FINGERPRINT_DEFAULT = "fbc89611e9d6012c"


def _checkpoint(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    return save_checkpoint(TrainResult(model=FaceNet(width=8), config=DetectorTrainConfig(width=8)), path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("det") / "detector.pt")


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return ModelBundle.default()


def _net(weights: Path, threshold: float = 0.5) -> DetectorConfig:
    settings = NetDetectorSettings(weights_sha256=file_sha256(weights), threshold=threshold)
    return DetectorConfig(kind="faceops-net", net=settings)


def test_mtcnn_kind_leaves_the_fingerprint_as_it_was(weights: Path) -> None:
    assert PreprocessConfig().fingerprint() == FINGERPRINT_DEFAULT
    assert "kind" not in PreprocessConfig().to_dict()["detector"]
    net = PreprocessConfig(detector=_net(weights))
    assert net.to_dict()["detector"]["kind"] == "faceops-net"
    assert net.fingerprint() != FINGERPRINT_DEFAULT and net.crop_fingerprint() != PreprocessConfig().crop_fingerprint()
    # another detector file is another fingerprint; the dump reads back to the same config
    other = _checkpoint(weights.with_name("other.pt"), seed=1)
    assert PreprocessConfig(detector=_net(other)).fingerprint() != net.fingerprint()
    assert PreprocessConfig.model_validate(net.to_dict()) == net


def test_detector_config_refuses_inconsistent_settings(weights: Path) -> None:
    with pytest.raises(ValueError, match="needs 'net'"):
        DetectorConfig(kind="faceops-net")
    with pytest.raises(ValueError, match="not 'mtcnn'"):
        DetectorConfig(net=NetDetectorSettings(weights_sha256=file_sha256(weights)))
    with pytest.raises(ValueError, match="weights_sha256"):
        NetDetectorSettings(weights_sha256="not-a-checksum")


def test_factory_builds_either_detector_behind_one_protocol(weights: Path, lfw: Path) -> None:
    image = load_image(sorted((lfw / "Colin_Powell").glob("*.jpg"))[0])
    mtcnn = build_detector(DetectorConfig(), device="cpu")
    net = build_detector(_net(weights, threshold=0.05), weights, device="cpu")
    assert isinstance(mtcnn, FaceDetector) and isinstance(net, NetDetector)
    for detector in (mtcnn, net):
        assert isinstance(detector, Detector)
        faces = detector.detect_batch([image, image])
        assert len(faces) == 2 and all(f.landmarks.shape == (5, 2) for f in faces[0])
    assert len(mtcnn.detect(image)) >= 1
    with pytest.raises(ConfigError, match="no weights file"):
        build_detector(_net(weights))
    with pytest.raises(InvalidModelFile, match="not the detector the preprocessing names"):
        build_detector(_net(weights), _checkpoint(weights.with_name("third.pt"), seed=2))


def test_bundle_carries_the_detector_and_checks_it(
    bundle: ModelBundle, weights: Path, tmp_path: Path, lfw: Path
) -> None:
    netted = bundle.with_detector(weights, NetDetectorSettings(weights_sha256="0" * 64, threshold=0.05))
    assert netted.preprocess.detector.net is not None
    assert netted.preprocess.detector.net.weights_sha256 == file_sha256(weights)  # the file's, not the given one
    saved = netted.save(tmp_path / "bundle")
    record = json.loads((saved / "bundle.json").read_text())["detector"]
    assert record == {"kind": "faceops-net", "file": "detector.pt", "sha256": file_sha256(weights)}
    loaded = ModelBundle.load(saved)
    assert loaded.preprocess == netted.preprocess and loaded.detector_weights == saved / "detector.pt"
    recognizer = loaded.recognizer(device="cpu")
    assert isinstance(recognizer.detector, NetDetector) and recognizer.detector.config.threshold == 0.05
    found = recognizer.analyze(sorted((lfw / "Colin_Powell").glob("*.jpg"))[0])[1]
    assert all(np.isclose(np.linalg.norm(f.embedding), 1.0, atol=1e-4) for f in found)
    # a gallery made with MTCNN's faces is refused by the model using the trained detector, and the reverse
    gallery = Gallery(bundle.recognizer(device="cpu").model_id)
    with pytest.raises(GalleryError, match="gallery was built with model"):
        gallery.check_model(recognizer.model_id)
    # a damaged detector file is refused at load, naming it
    data = bytearray((saved / "detector.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (saved / "detector.pt").write_bytes(bytes(data))
    with pytest.raises(InvalidModelFile, match="detector.pt: its checksum differs"):
        ModelBundle.load(saved)
    (saved / "detector.pt").unlink()
    with pytest.raises(InvalidModelFile, match="detector file detector.pt is missing"):
        ModelBundle.load(saved)


def test_mtcnn_bundles_are_saved_as_before(bundle: ModelBundle, tmp_path: Path) -> None:
    meta = json.loads((bundle.save(tmp_path / "b") / "bundle.json").read_text())
    assert "detector" not in meta and ModelBundle.load(tmp_path / "b").detector_weights is None


def test_gate_admits_within_tolerances_and_names_each_refusal() -> None:
    champion = {"lfw_accuracy": 0.99, "multiface_recall": 0.90}
    admitted = decide_detector({"lfw_accuracy": 0.989, "multiface_recall": 0.885}, champion)
    assert admitted.admitted and "admitted against MTCNN" in admitted.reason
    refused = decide_detector({"lfw_accuracy": 0.70, "multiface_recall": 0.04}, champion, champion_name="MTCNN")
    assert not refused.admitted and len(refused.problems) == 2
    assert "LFW verification accuracy drops by 29.00 points" in refused.reason
    assert "multi-face recall drops by 86.00 points" in refused.reason
    only_recall = decide_detector({"lfw_accuracy": 0.99, "multiface_recall": 0.87}, champion)
    assert only_recall.problems == [
        "multi-face recall drops by 3.00 points (87.00% against MTCNN's 90.00%; at most 2.00 allowed)"
    ]
    loose = DetectorGateConfig(max_accuracy_drop=0.5, max_recall_drop=1.0)
    assert decide_detector({"lfw_accuracy": 0.70, "multiface_recall": 0.04}, champion, loose).admitted
    with pytest.raises(ConfigError, match="multiface_recall"):
        decide_detector({"lfw_accuracy": 0.9}, champion)


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from faceops.settings import get_settings

    monkeypatch.setenv("FACEOPS_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    monkeypatch.setenv("FACEOPS_MLFLOW_ARTIFACTS", str(tmp_path / "mlartifacts"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.integration
def test_detector_is_its_own_registered_model(tracking: None, weights: Path, tmp_path: Path) -> None:
    from faceops import registry
    from faceops.errors import ModelNotFound

    name = "faceops-detector-test"
    first = registry.register_detector(weights, {"lfw_accuracy": 0.7}, {"decision": "reject"}, model=name)
    assert registry.alias_version(registry.CHALLENGER, model=name) == first["version"] == "1"
    assert registry.alias_version(registry.CHAMPION, model=name) is None
    assert registry.alias_version(registry.CHAMPION) is None  # the embedder's model is untouched
    registry.set_alias(registry.CHAMPION, "1", "test", model=name)
    rows = registry.detector_versions(name)
    assert rows[0]["aliases"] == ["champion"] and rows[0]["tags"]["decision"] == "reject"
    assert registry.champion_history(model=name)[-1]["version"] == "1"
    fetched = registry.download_detector("champion", tmp_path / "dl", model=name)
    assert file_sha256(fetched) == file_sha256(weights)
    with pytest.raises(ModelNotFound, match="no version or alias 'challenger'"):
        registry.download_detector("challenger", tmp_path / "dl2", model=name)


def test_cli_takes_the_detector_pipeline_parameters_from_its_own_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from faceops.cli import cli
    from faceops.cli.pipeline import _collect

    params = tmp_path / "detector.yaml"
    params.write_text("photos: 8\ntrain: {epochs: 1}\nmax_recall_drop: 0.05\n")
    options = {"detector_path": params, "reason": "nightly", "shards": None, "config_path": None}
    assert _collect("train-detector", options) == {
        "photos": 8, "train": {"epochs": 1}, "max_recall_drop": 0.05, "reason": "nightly"
    }
    refused = CliRunner().invoke(cli, ["pipeline", "run", "--local", "--pipeline", "train-detector", "--shards", "2"])
    assert refused.exit_code == 2 and "does not take --shards" in refused.output
    wrong = CliRunner().invoke(cli, ["pipeline", "run", "--local", "--detector-config", str(params)])
    assert wrong.exit_code == 2 and "--detector-config is for the train-detector pipeline" in wrong.output
