"""Image conditions on real LFW photos: each changes the photo the way its name says, reproducibly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceops.errors import ConfigError, InvalidImage
from faceops.evaluation.conditions import CONDITIONS, apply_condition, condition_params
from faceops.face.images import load_image

NAMES = [
    "underexposure",
    "overexposure",
    "low_contrast",
    "gaussian_blur",
    "motion_blur",
    "noise",
    "jpeg",
    "downscale",
    "rotation",
    "occlusion_eyes",
    "occlusion_lower",
    "greyscale",
]


@pytest.fixture(scope="module")
def photo(lfw: Path) -> np.ndarray:
    return load_image(lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")


def _grey(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _sharpness(img: np.ndarray) -> float:
    return float(cv2.Laplacian(_grey(img), cv2.CV_64F).var())


def _apply(img: np.ndarray, name: str, seed: int = 0, severity: float | None = None) -> np.ndarray:
    return apply_condition(img, name, np.random.default_rng(seed), severity)


def test_the_named_conditions_exist() -> None:
    assert sorted(CONDITIONS) == sorted(NAMES)
    for name, spec in CONDITIONS.items():
        assert 0.0 < spec.default_severity <= 1.0 and spec.description
        assert condition_params(name)["severity"] == spec.default_severity


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_input_untouched_and_seeded(photo: np.ndarray, name: str) -> None:
    before = photo.copy()
    out = _apply(photo, name, seed=3)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.array_equal(photo, before)
    assert not np.array_equal(out, photo)
    assert np.array_equal(out, _apply(photo, name, seed=3))


def test_random_parts_follow_the_seed(photo: np.ndarray) -> None:
    assert not np.array_equal(_apply(photo, "noise", 1), _apply(photo, "noise", 2))
    # motion blur direction is random: two seeds give different images
    assert not np.array_equal(_apply(photo, "motion_blur", 1), _apply(photo, "motion_blur", 2))


def test_exposure(photo: np.ndarray) -> None:
    base = _grey(photo).mean()
    dark, darker = _grey(_apply(photo, "underexposure", severity=0.3)).mean(), _grey(_apply(photo, "underexposure")).mean()
    assert darker < dark < base - 10
    assert _grey(_apply(photo, "overexposure")).mean() > base + 20


def test_low_contrast_and_greyscale(photo: np.ndarray) -> None:
    assert _grey(_apply(photo, "low_contrast")).std() < 0.5 * _grey(photo).std()
    assert abs(_grey(_apply(photo, "low_contrast")).mean() - _grey(photo).mean()) < 3
    grey = _apply(photo, "greyscale").astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 1 and np.abs(grey[..., 1] - grey[..., 2]).max() <= 1
    assert np.abs(photo[..., 0].astype(int) - photo[..., 2]).mean() > 5  # the original has colour


@pytest.mark.parametrize("name", ["gaussian_blur", "motion_blur", "downscale"])
def test_detail_is_lost(photo: np.ndarray, name: str) -> None:
    mild, hard = _sharpness(_apply(photo, name, severity=0.2)), _sharpness(_apply(photo, name, severity=1.0))
    assert hard < mild <= _sharpness(photo)
    assert hard < 0.6 * _sharpness(photo)


def test_jpeg_loses_more_at_lower_quality(photo: np.ndarray) -> None:
    def error(severity: float) -> float:
        return float(np.abs(_apply(photo, "jpeg", severity=severity).astype(int) - photo).mean())

    assert 0 < error(0.0) < error(0.5) < error(1.0)


def test_noise_adds_variance_around_the_photo(photo: np.ndarray) -> None:
    diff = _apply(photo, "noise", severity=0.5).astype(float) - photo
    mid = (photo > 70) & (photo < 185)  # pixels that clipping at 0 or 255 cannot reach
    assert abs(diff[mid].mean()) < 1.0
    assert 18 < diff[mid].std() < 22  # sigma 20 grey levels


def test_jpeg_quality_range() -> None:
    assert condition_params("jpeg", 0.0)["quality"] == 30 and condition_params("jpeg", 1.0)["quality"] == 10
    assert condition_params("downscale", 0.0)["face_px"] == 48 and condition_params("downscale", 1.0)["face_px"] == 24


def test_rotation_is_in_plane(photo: np.ndarray) -> None:
    out = _apply(photo, "rotation", seed=5)
    degrees = condition_params("rotation")["degrees"]
    h, w = photo.shape[:2]
    layout = np.array([[0.42, 0.45], [0.59, 0.45], [0.52, 0.55], [0.44, 0.63], [0.59, 0.63]])  # no landmarks given
    centre = tuple(float(v) for v in (layout * [w, h]).mean(axis=0))
    box = np.s_[int(0.3 * h) : int(0.7 * h), int(0.3 * w) : int(0.7 * w)]
    errors = {}
    for sign in (1, -1):  # undo the rotation: one of the two signs brings the centre of the face back
        back = cv2.warpAffine(out, cv2.getRotationMatrix2D(centre, -sign * degrees, 1.0), (w, h))
        errors[sign] = np.abs(back[box].astype(int) - photo[box]).mean()
    assert min(errors.values()) < 0.3 * np.abs(out[box].astype(int) - photo[box]).mean()


def test_occlusions_cover_the_named_region(photo: np.ndarray, recognizer) -> None:  # type: ignore[no-untyped-def]
    face = recognizer.detect(photo)[0]
    eyes = apply_condition(photo, "occlusion_eyes", np.random.default_rng(0), landmarks=face.landmarks)
    lower = apply_condition(photo, "occlusion_lower", np.random.default_rng(0), landmarks=face.landmarks)
    for (x, y), expect_eyes in zip(face.landmarks.astype(int), [True, True, False, False, False], strict=True):
        assert (np.ptp(eyes[y - 2 : y + 3, x - 2 : x + 3]) == 0) == expect_eyes
    mouth = face.landmarks[3:].mean(axis=0).astype(int)
    assert np.ptp(lower[mouth[1] - 2 : mouth[1] + 3, mouth[0] - 2 : mouth[0] + 3]) == 0
    assert np.array_equal(lower[: int(face.landmarks[0, 1])], photo[: int(face.landmarks[0, 1])])  # above: kept
    assert _grey(eyes).mean() < _grey(photo).mean() < _grey(lower).mean()


def test_bad_arguments(photo: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="unknown image condition 'fog'"):
        apply_condition(photo, "fog", rng)
    with pytest.raises(ConfigError, match="severity"):
        apply_condition(photo, "noise", rng, severity=1.5)
    with pytest.raises(InvalidImage, match="uint8"):
        apply_condition(photo.astype(np.float32), "noise", rng)
    with pytest.raises(InvalidImage, match="uint8"):
        apply_condition(photo[..., 0], "noise", rng)
    with pytest.raises(InvalidImage, match="landmarks"):
        apply_condition(photo, "occlusion_eyes", rng, landmarks=np.zeros((4, 2)))
