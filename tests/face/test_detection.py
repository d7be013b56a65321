"""Detection and alignment on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceops.errors import NoFaceDetected
from faceops.face.alignment import TEMPLATE, align_face, similarity_transform
from faceops.face.config import AlignConfig, DetectorConfig
from faceops.face.detection import Face, FaceDetector, select_subject
from faceops.face.images import load_image


def test_multiface_finds_at_least_six_confident_faces(recognizer, datasets: Path) -> None:
    faces = recognizer.detect(datasets / "multiface" / "multiface.jpg")
    confident = [f for f in faces if f.probability >= 0.95]
    assert len(confident) >= 6
    for face in confident:
        x1, y1, x2, y2 = face.box
        assert face.landmarks.shape == (5, 2)
        inside = (face.landmarks[:, 0] >= x1 - 5) & (face.landmarks[:, 0] <= x2 + 5)
        assert inside.all(), "landmarks lie inside their box"


def test_expected_counts_on_every_multiface_photo(recognizer, datasets: Path) -> None:
    import csv

    with (datasets / "multiface" / "faces.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    column = next(c for c in rows[0] if "0.95" in c)
    for row in rows:
        faces = recognizer.detect(datasets / "multiface" / row["file"])
        assert sum(f.probability >= 0.95 for f in faces) >= int(row[column]), row["file"]


def test_batch_equals_single(recognizer, lfw: Path) -> None:
    paths = sorted((lfw / "Hugo_Chavez").glob("*.jpg"))[:4]
    images = [load_image(p) for p in paths]
    batch = recognizer.detector.detect_batch(images)
    for image, found in zip(images, batch, strict=True):
        single = recognizer.detector.detect(image)
        assert len(single) == len(found)
        assert np.allclose(single[0].box, found[0].box, atol=1.0)


def test_large_photo_is_detected_in_original_coordinates(recognizer, datasets: Path) -> None:
    big = datasets / "deepface_testset" / "id09" / "img40.jpg"  # 3061x4600
    image = load_image(big)
    assert max(image.shape) > 3000
    face = select_subject(recognizer.detector.detect(image), image.shape, "largest")
    assert face is not None and face.probability > 0.95
    assert face.box[2] > 1600 or face.box[3] > 1600 or face.size > 200, "boxes are scaled back to full size"


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (11, 11), (19, 19), (10, 10000), (10000, 10), (30, 5000)])
def test_images_too_small_for_a_face_have_none(recognizer, lfw: Path, shape: tuple[int, int]) -> None:
    # facenet-pytorch raises on these (its pyramid is empty); they sit in a batch beside a real photo.
    real = load_image(sorted((lfw / "Hugo_Chavez").glob("*.jpg"))[0])
    tiny = np.full((*shape, 3), 128, dtype=np.uint8)
    found = recognizer.detector.detect_batch([tiny, real])
    assert found[0] == []
    assert len(found[1]) >= 1
    with pytest.raises(NoFaceDetected):
        recognizer.detector.detect_subject(tiny, "tiny.png")


def test_min_face_size_is_configurable(datasets: Path) -> None:
    image = load_image(datasets / "multiface" / "multiface.jpg")
    strict = FaceDetector(DetectorConfig(min_face_size=400)).detect(image)
    assert len(strict) < 6


def _face(box, landmarks) -> Face:
    return Face(box=box, probability=1.0, landmarks=np.asarray(landmarks, dtype=np.float32))


def test_subject_policies() -> None:
    big_corner = _face((0, 0, 120, 120), np.zeros((5, 2)))
    small_centre = _face((180, 180, 260, 260), np.zeros((5, 2)))
    shape = (440, 440, 3)
    assert select_subject([big_corner, small_centre], shape, "largest") is big_corner
    assert select_subject([big_corner, small_centre], shape, "center") is small_centre
    assert select_subject([big_corner, small_centre], shape, "center_weighted") is small_centre
    assert select_subject([], shape, "largest") is None
    with pytest.raises(ValueError, match="unknown subject policy"):
        select_subject([big_corner], shape, "random")


def test_similarity_transform_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rot.T + shift
    matrix = similarity_transform(src, dst)
    assert np.allclose(matrix[:, :2], scale * rot, atol=1e-9) and np.allclose(matrix[:, 2], shift, atol=1e-9)


def _eye_angle(landmarks: np.ndarray) -> float:
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return float(np.degrees(np.arctan2(ry - ly, rx - lx)))


def test_similarity_alignment_levels_a_tilted_face(recognizer, lfw: Path) -> None:
    import cv2

    image = load_image(lfw / "Colin_Powell" / "Colin_Powell_0001.jpg")
    h, w = image.shape[:2]
    tilted = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0), (w, h))
    face = recognizer.detector.detect(tilted)[0]
    assert abs(_eye_angle(face.landmarks)) > 15, "the input is tilted"
    config = AlignConfig(method="similarity", margin=0.2)
    crop = align_face(tilted, face, config)
    assert crop.shape == (160, 160, 3)
    again = recognizer.detector.detect(crop)
    assert again, "the aligned crop still shows a face"
    assert abs(_eye_angle(again[0].landmarks)) < 5, "similarity alignment levels the eyes"
    eyes = again[0].landmarks[:2]
    expected = TEMPLATE[:2] * 160 / 1.2 + 80
    assert np.abs(eyes - expected).max() < 12, "eyes land on the template"
    plain = align_face(tilted, face, AlignConfig(method="crop", margin=0.2))
    assert plain.shape == (160, 160, 3)
