"""MTCNN's nets on ONNX Runtime: the same faces, boxes and landmarks as facenet-pytorch's PyTorch nets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceops.errors import ConfigError
from faceops.face.config import DetectorConfig, DetectorRung
from faceops.face.detection import Face, FaceDetector
from faceops.face.images import load_image


def _photos(datasets: Path) -> list[np.ndarray]:
    lfw = datasets / "lfw"
    singles = [lfw / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg", lfw / "Serena_Williams" / "Serena_Williams_0003.jpg"]
    groups = [datasets / "multiface" / "two_people.jpg", datasets / "multiface" / "selfie-many-people.jpg"]
    return [load_image(p) for p in singles + groups]


def _assert_same(expected: list[list[Face]], got: list[list[Face]]) -> None:
    assert [len(f) for f in expected] == [len(f) for f in got]
    for ours, theirs in zip(expected, got, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a.box, b.box, atol=0.05)  # pixels
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.05)
            assert abs(a.probability - b.probability) < 1e-4


@pytest.mark.parametrize("min_face_size", [20, 40])
def test_onnxruntime_nets_find_the_same_faces_as_pytorch(datasets: Path, min_face_size: int) -> None:
    images = _photos(datasets)
    config = DetectorConfig(min_face_size=min_face_size)
    torch_detector = FaceDetector(config, device="cpu")
    onnx_detector = FaceDetector(config, device="cpu", backend="onnxruntime")
    expected = [torch_detector.detect(image) for image in images]
    assert sum(len(f) for f in expected) > len(images)  # the group photos hold several faces
    _assert_same(expected, [onnx_detector.detect(image) for image in images])
    # batched: equal shapes go through the nets together
    _assert_same(expected[:2], onnx_detector.detect_batch(images[:2]))


def test_ladder_rungs_run_on_onnxruntime_too(datasets: Path) -> None:
    config = DetectorConfig(ladder=(DetectorRung(thresholds=(0.5, 0.6, 0.6)),))
    detector = FaceDetector(config, device="cpu", backend="onnxruntime")
    assert all(type(m.pnet).__name__ == "_OrtNet" for m in detector._mtcnns.values())
    assert len(detector._mtcnns) == 2
    blank = np.full((120, 120, 3), 127, dtype=np.uint8)  # no face: every rung is tried
    image = _photos(datasets)[0]
    found = detector.detect_batch([blank, image])
    assert found[0] == [] and len(found[1]) >= 1
    assert detector.ladder_counts["none"] == 1


def test_an_unknown_detector_backend_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown detector backend 'tensorrt'"):
        FaceDetector(DetectorConfig(), device="cpu", backend="tensorrt")


def test_the_exported_nets_are_kept_in_the_cache_folder_and_a_damaged_one_is_exported_again(
    datasets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faceops.face import detection
    from faceops.settings import get_settings

    monkeypatch.setenv("FACEOPS_CACHE_DIR", str(tmp_path))
    get_settings.cache_clear()
    monkeypatch.setattr(detection, "_EXPORTED", {})  # as in a new process
    try:
        image = _photos(datasets)[1]
        expected = FaceDetector(DetectorConfig(), device="cpu", backend="onnxruntime").detect(image)
        kept = sorted((tmp_path / "onnx").glob("mtcnn-*.onnx"))
        assert [p.name.split("-")[1] for p in kept] == ["onet", "pnet", "rnet"]

        # a new process reads them instead of exporting
        monkeypatch.setattr(detection, "_EXPORTED", {})
        monkeypatch.setattr(detection, "_export", lambda net, name: pytest.fail(f"{name} exported again"))
        _assert_same([expected], [FaceDetector(DetectorConfig(), device="cpu", backend="onnxruntime").detect(image)])

        # a damaged file is refused by ONNX Runtime, exported again and replaced
        monkeypatch.undo()
        monkeypatch.setenv("FACEOPS_CACHE_DIR", str(tmp_path))
        get_settings.cache_clear()
        monkeypatch.setattr(detection, "_EXPORTED", {})
        damaged = next(p for p in kept if "-rnet-" in p.name)
        damaged.write_bytes(b"not an onnx model")
        _assert_same([expected], [FaceDetector(DetectorConfig(), device="cpu", backend="onnxruntime").detect(image)])
        assert damaged.read_bytes().startswith(b"\x08")  # an ONNX ModelProto again (field 1, ir_version)
    finally:
        get_settings.cache_clear()
