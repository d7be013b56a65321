"""The detector's retry ladder on real photos: it recovers faces the first pass misses and invents none."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from faceops.face.config import DetectorConfig, DetectorRung, PreprocessConfig
from faceops.face.detection import FaceDetector, select_subject
from faceops.face.images import load_image

# The ladder benchmarks/detector.py measured: lower P/R/O thresholds, then a lower probability floor, then the
# photo enlarged 2x (at the default floor).
LADDER = (
    DetectorRung(thresholds=(0.5, 0.6, 0.6)),
    DetectorRung(thresholds=(0.5, 0.6, 0.6), min_probability=0.8),
    DetectorRung(upscale=2.0),
)
PEOPLE = ("Hugo_Chavez", "Colin_Powell")


@pytest.fixture(scope="module")
def plain() -> FaceDetector:
    return FaceDetector(DetectorConfig())


@pytest.fixture(scope="module")
def ladder() -> FaceDetector:
    return FaceDetector(DetectorConfig(ladder=LADDER))


def _far_away(photo: np.ndarray, side: int = 22) -> np.ndarray:
    """An LFW photo shrunk to ``side`` pixels (its face to about 9 px), centred on a 120x120 grey canvas: a face
    too small for the first pass (min_face_size 20) that an enlarged retry can search."""
    small = cv2.resize(photo, (side, side), interpolation=cv2.INTER_AREA)
    canvas = np.full((120, 120, 3), 128, dtype=np.uint8)
    offset = (120 - side) // 2
    canvas[offset : offset + side, offset : offset + side] = small
    return canvas


def _far_away_photos(lfw: Path, plain: FaceDetector) -> list[np.ndarray]:
    photos = [_far_away(load_image(p)) for name in PEOPLE for p in sorted((lfw / name).glob("*.jpg"))[:4]]
    missed = [photo for photo, faces in zip(photos, plain.detect_batch(photos), strict=True) if not faces]
    assert len(missed) >= 2, "the first pass should miss some of these 9 px faces, else this test proves nothing"
    return missed


def test_ladder_finds_small_faces_the_first_pass_misses(lfw: Path, plain: FaceDetector, ladder: FaceDetector) -> None:
    missed = _far_away_photos(lfw, plain)
    ladder.reset_ladder_counts()
    found = ladder.detect_batch(missed)
    for photo, faces in zip(missed, found, strict=True):
        subject = select_subject(faces, photo.shape, ladder.config.subject)
        assert subject is not None and subject.probability >= 0.9
        centre = ((subject.box[0] + subject.box[2]) / 2, (subject.box[1] + subject.box[3]) / 2)
        assert abs(centre[0] - 60) < 8 and abs(centre[1] - 60) < 10, "the face found is the one on the canvas"
        assert 5 < subject.size < 20, "boxes are scaled back to the un-enlarged photo"
        assert ((subject.landmarks >= 0) & (subject.landmarks <= 120)).all()
    counts = ladder.ladder_counts
    assert counts["images"] == len(missed) and counts["first"] == 0 and counts["none"] == 0
    assert counts["rung_1"] + counts["rung_2"] + counts["rung_3"] == len(missed)
    assert counts["rung_3"] >= 1, "enlarging is what finds faces under min_face_size"


def _non_faces(datasets: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    sklearn_images = Path(__import__("sklearn").__file__).parent / "datasets" / "images"
    lfw_photo = load_image(sorted((datasets / "lfw" / "Hugo_Chavez").glob("*.jpg"))[0])
    return {
        "grey": np.full((250, 250, 3), 128, dtype=np.uint8),
        "black": np.zeros((250, 250, 3), dtype=np.uint8),
        "white": np.full((250, 250, 3), 255, dtype=np.uint8),
        "noise": rng.integers(0, 256, (250, 250, 3), dtype=np.uint8),
        "small noise": rng.integers(0, 256, (100, 100, 3), dtype=np.uint8),
        "gradient": np.tile(np.linspace(0, 255, 250, dtype=np.uint8)[None, :, None], (250, 1, 3)),
        # Real photos without a person (scikit-learn's sample images) and a face-free strip of an LFW photo.
        "china.jpg": load_image(sklearn_images / "china.jpg"),
        "flower.jpg": load_image(sklearn_images / "flower.jpg"),
        "lfw bottom strip": np.ascontiguousarray(lfw_photo[lfw_photo.shape[0] * 4 // 5 :, :]),
        "empty": np.zeros((0, 40, 3), dtype=np.uint8),
    }


def test_ladder_invents_no_face_on_images_without_one(datasets: Path, ladder: FaceDetector) -> None:
    images = _non_faces(datasets)
    ladder.reset_ladder_counts()
    found = ladder.detect_batch(list(images.values()))
    invented = {name: [round(f.probability, 3) for f in faces] for name, faces in zip(images, found, strict=True) if faces}
    assert invented == {}
    counts = ladder.ladder_counts
    assert counts["images"] == counts["none"] == len(images)
    assert counts["first"] == counts["rung_1"] == counts["rung_2"] == counts["rung_3"] == 0


def test_photos_found_at_once_never_climb(lfw: Path, plain: FaceDetector, ladder: FaceDetector) -> None:
    photos = [load_image(p) for p in sorted((lfw / "Hugo_Chavez").glob("*.jpg"))[:3]]
    ladder.reset_ladder_counts()
    with_ladder = ladder.detect_batch(photos)
    assert ladder.ladder_counts == {"images": 3, "first": 3, "rung_1": 0, "rung_2": 0, "rung_3": 0, "none": 0}
    for a, b in zip(plain.detect_batch(photos), with_ladder, strict=True):
        assert len(a) == len(b)
        assert np.allclose([f.box for f in a], [f.box for f in b])


def test_counters_add_up_over_calls_and_reset(lfw: Path, plain: FaceDetector, ladder: FaceDetector) -> None:
    missed = _far_away_photos(lfw, plain)[:1]
    face = load_image(sorted((lfw / "Colin_Powell").glob("*.jpg"))[0])
    grey = np.full((250, 250, 3), 128, dtype=np.uint8)
    ladder.reset_ladder_counts()
    ladder.detect(face)
    ladder.detect_batch([grey, missed[0], face])
    counts = ladder.ladder_counts
    assert counts["images"] == 4 and counts["first"] == 2 and counts["none"] == 1
    assert sum(counts[f"rung_{i}"] for i in (1, 2, 3)) == 1
    ladder.reset_ladder_counts()
    assert set(ladder.ladder_counts.values()) == {0}
    plain.reset_ladder_counts()
    plain.detect_batch([grey, face])
    assert plain.ladder_counts == {"images": 2, "first": 1, "none": 1}, "without a ladder there are no rungs"


def test_an_enlarging_rung_skips_photos_already_large() -> None:
    # 1000 px enlarged 2x passes the 1600 px cap: the rung does not run, the photo stays missed.
    detector = FaceDetector(DetectorConfig(ladder=(DetectorRung(upscale=2.0),)))
    detector.detect(np.full((1000, 700, 3), 128, dtype=np.uint8))
    assert detector.ladder_counts["none"] == 1 and detector.ladder_counts["rung_1"] == 0


def test_no_ladder_keeps_the_preprocessing_fingerprint() -> None:
    # Configs saved before the ladder existed have no "ladder" key; their fingerprint must not move.
    assert "ladder" not in DetectorConfig().model_dump(mode="json")
    with_ladder = PreprocessConfig(detector=DetectorConfig(ladder=LADDER))
    assert with_ladder.fingerprint() != PreprocessConfig().fingerprint()
    assert PreprocessConfig.model_validate(with_ladder.to_dict()) == with_ladder


@pytest.mark.parametrize(
    "rung",
    [{"upscale": 0.5}, {"upscale": 8}, {"thresholds": (0.5, 1.0, 0.6)}, {"min_probability": 1.5}, {"unknown": 1}],
)
def test_bad_rungs_are_refused(rung: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="ladder"):
        DetectorConfig.model_validate({"ladder": [rung]})
