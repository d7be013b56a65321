"""Drift -> run config: the monitor's drift description becomes augmentation, preprocessing and gate conditions;
illumination normalisation of crops; drift-matched augmentation of crops (real LFW photos)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from faceops.errors import ConfigError
from faceops.face.config import AlignConfig, PreprocessConfig
from faceops.face.illumination import ILLUMINATION_METHODS, TARGET_MEAN, normalize_illumination
from faceops.face.quality import crop_quality
from faceops.training.config import AugmentConfig, DriftTarget, TrainConfig
from faceops.training.drift_plan import (
    blur_sigma_band,
    condition_severities,
    degrade_like,
    describe_drift,
    drift_target,
    gate_for_drift,
    plan_augment,
    plan_run,
)
from faceops.training.features import augment_crop


def _crop(lfw, person: str = "Hugo_Chavez", dark: float = 1.0, blur: float = 0.0) -> np.ndarray:
    img = Image.open(sorted((lfw / person).glob("*.jpg"))[0]).convert("RGB")
    if dark != 1.0:
        img = ImageEnhance.Brightness(img).enhance(dark)
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(img.crop((50, 50, 210, 210)))


def _monitor_features(brightness: tuple[float, float], blur: tuple[float, float]) -> list[dict]:
    return [
        {"feature": "brightness", "drifted": True, "reference_mean": brightness[0], "current_mean": brightness[1]},
        {"feature": "blur", "drifted": True, "reference_mean": blur[0], "current_mean": blur[1]},
        {"feature": "face_size", "drifted": False, "reference_mean": 100.0, "current_mean": 99.0},
        {"feature": "embeddings", "drifted": True, "reference_mean": 0.5, "current_mean": 0.4},
    ]


def test_describe_drift_gives_direction_and_size_of_drifted_features_only():
    changes = describe_drift(_monitor_features((120.0, 42.0), (900.0, 13.0)))
    by = {c["feature"]: c for c in changes}
    assert set(by) == {"brightness", "blur", "embeddings"}  # face_size did not drift
    assert by["brightness"]["direction"] == "down" and by["brightness"]["change"] == pytest.approx(-78.0)
    assert by["brightness"]["ratio"] == pytest.approx(0.35)
    assert by["blur"]["direction"] == "down" and by["blur"]["ratio"] == pytest.approx(13 / 900, rel=1e-4)


def test_a_dark_blurred_drift_plans_dark_and_blurred_copies_and_matching_gate_conditions():
    target = drift_target(describe_drift(_monitor_features((120.0, 42.0), (900.0, 13.0))))
    assert target is not None and target.brightness_ratio == pytest.approx(0.35)
    augment = plan_augment(target, AugmentConfig())
    low, high = augment.dark_range
    assert augment.dark_prob > 0 and low < 0.35 < high  # the measured darkening is inside the band
    assert augment.blur_prob > AugmentConfig().blur_prob and augment.blur_min_sigma < augment.blur_sigma
    assert augment.copies >= 2
    gate = gate_for_drift(target, {"max_tar_drop": 0.01})
    assert gate["max_tar_drop"] == 0.01 and gate["robustness"]["conditions"] == ["underexposure", "gaussian_blur"]
    assert set(gate["robustness"]["severities"]) == {"underexposure", "gaussian_blur"}
    assert all(0 < v <= 1 for v in condition_severities(target).values())


def test_no_actionable_drift_plans_nothing():
    assert drift_target(describe_drift([{"feature": "face_size", "drifted": True, "reference_mean": 1, "current_mean": 2}])) is None
    target = DriftTarget(brightness_ratio=0.97, blur_ratio=0.9)  # within noise: no darkening, no blur
    augment = plan_augment(target, AugmentConfig())
    assert augment.dark_prob == 0 and augment.blur_prob == AugmentConfig().blur_prob
    assert gate_for_drift(target) == {}


def test_blur_band_grows_with_the_blur_that_made_it(lfw):
    """The sharpness table is a median over LFW crops: a photo's own ratio maps near, not onto, its sigma."""
    sigmas = []
    for sigma in (1.0, 2.5):
        ratios = []
        for person in ("Hugo_Chavez", "Colin_Powell", "Serena_Williams", "Laura_Bush", "Hans_Blix"):
            sharp = _crop(lfw, person)
            ratios.append(crop_quality(cv2.GaussianBlur(sharp, (0, 0), sigma))[1] / crop_quality(sharp)[1])
        low, high = blur_sigma_band(float(np.median(ratios)))
        assert low == high and abs(low - sigma) <= 1.5  # no darkening: one sigma explains it
        sigmas.append(low)
    assert sigmas[0] < sigmas[1]
    dark_low, dark_high = blur_sigma_band(0.0144, 0.35)  # darker too: the Laplacian shrinks with contrast
    assert 0.5 < dark_low < 2.5 < dark_high <= 4.0


def test_degrade_like_reproduces_the_measured_drift(lfw):
    photo = np.asarray(Image.open(sorted((lfw / "Hugo_Chavez").glob("*.jpg"))[0]).convert("RGB"))
    target = DriftTarget(brightness_ratio=0.35, blur_ratio=0.02)
    out = degrade_like(photo, target)
    b0, s0 = crop_quality(photo[50:210, 50:210])
    b1, s1 = crop_quality(out[50:210, 50:210])
    assert b1 / b0 == pytest.approx(0.35, abs=0.05) and s1 / s0 < 0.2


def test_illumination_brings_a_dark_crop_back_and_leaves_none_alone(lfw):
    dark = _crop(lfw, dark=0.35)
    assert normalize_illumination(dark, "none") is dark
    for method, gain in (("clahe", 5), ("gamma", 40), ("histeq", 30)):  # CLAHE limits its contrast gain
        out = normalize_illumination(dark, method)
        assert out.shape == dark.shape and out.dtype == np.uint8
        assert crop_quality(out)[0] > crop_quality(dark)[0] + gain, method
    # gamma maps the crop's mean level onto the target: a flat crop at that level lands on it
    flat = np.full((32, 32, 3), int(crop_quality(dark)[0]), dtype=np.uint8)
    assert crop_quality(normalize_illumination(flat, "gamma"))[0] == pytest.approx(TARGET_MEAN, abs=3)
    with pytest.raises(ConfigError, match="unknown illumination method 'retinex'"):
        normalize_illumination(dark, "retinex")
    assert set(ILLUMINATION_METHODS) == {"none", "clahe", "gamma", "histeq"}


def test_illumination_field_keeps_existing_fingerprints():
    assert "illumination" not in PreprocessConfig().to_dict()["align"]
    changed = PreprocessConfig(align=AlignConfig(illumination="clahe"))
    assert changed.fingerprint() != PreprocessConfig().fingerprint()
    assert changed.crop_fingerprint() != PreprocessConfig().crop_fingerprint()  # cached crops are not shared


def test_augment_defaults_unchanged_and_dark_copies_are_darker(lfw):
    assert "dark_prob" not in AugmentConfig().model_dump() and "blur_min_sigma" not in AugmentConfig().model_dump()
    crop = _crop(lfw)
    same = [augment_crop(crop, AugmentConfig(), np.random.default_rng(k)) for k in range(3)]
    again = [augment_crop(crop, AugmentConfig(dark_prob=0.0), np.random.default_rng(k)) for k in range(3)]
    assert all(np.array_equal(a, b) for a, b in zip(same, again, strict=True))  # old views are reproduced
    config = AugmentConfig(dark_prob=1.0, dark_range=(0.3, 0.4), color_jitter=0.0, blur_prob=0.0)
    darker = augment_crop(crop, config, np.random.default_rng(0))
    assert crop_quality(darker)[0] / crop_quality(crop)[0] == pytest.approx(0.35, abs=0.06)
    with pytest.raises(ValueError, match="dark_range"):
        AugmentConfig(dark_range=(0.8, 0.2))
    with pytest.raises(ValueError, match="blur_min_sigma"):
        AugmentConfig(blur_min_sigma=3.0, blur_sigma=1.0)


def test_plan_run_without_drift_changes_nothing(tmp_path):
    config = TrainConfig(data_root=tmp_path)
    assert plan_run(config, tmp_path) == (config, {})


@pytest.mark.slow  # detection and embedding of a small data version twice: ~40 s on a quiet machine
def test_plan_run_measures_illumination_on_the_drifted_slice(tmp_path, mon_data_root):
    """The run's own data version, its photos put through the drift: the step is kept only if it helps."""
    config = TrainConfig(
        data_root=mon_data_root,
        drift=DriftTarget(brightness_ratio=0.35, blur_ratio=0.0144, illumination_candidates=("none", "gamma")),
    )
    planned, plan = plan_run(config, tmp_path)
    figures = plan["illumination_measurement"]["candidates"]
    assert set(figures) == {"none", "gamma"} and plan["illumination_measurement"]["usable"] >= 12
    chosen = plan["illumination"]
    assert planned.preprocess.align.illumination == chosen
    if chosen != "none":  # chosen only when it beats 'none' on the drifted slice without costing clean TAR
        assert figures[chosen]["drifted_tar"] > figures["none"]["drifted_tar"]
        assert figures[chosen]["clean_tar"] >= figures["none"]["clean_tar"] - config.gate.max_tar_drop
    assert planned.augment.dark_prob > 0 and plan["gate_conditions"] == ["underexposure", "gaussian_blur"]


@pytest.fixture(scope="module")
def mon_data_root(lfw, tmp_path_factory):
    from tests.monitoring import traffic

    return traffic.make_data_root(lfw, tmp_path_factory.mktemp("drift-data"), per_person=3)
