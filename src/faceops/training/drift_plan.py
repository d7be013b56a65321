"""From the drift a retraining was started for to the run's config: augmentation, preprocessing, gate conditions.

The monitor describes each drifted feature by direction and size (:func:`describe_drift`: window mean against
reference mean) and condenses the ones training can act on into a :class:`~faceops.training.config.DriftTarget`
(:func:`drift_target`), which travels in the trigger's payload inside the run config. The training run then
(:func:`plan_run`):

1. matches the augmentation to the drift (:func:`plan_augment`): darker copies in the measured brightness band,
   blur in the sigma band that explains the measured loss of sharpness;
2. measures the illumination steps of :mod:`faceops.face.illumination` on a drifted slice of its own data
   version (its photos put through the measured drift, :func:`degrade_like`) and keeps the best one only if it
   helps there without costing clean TAR beyond ``max_clean_tar_drop`` (:func:`choose_illumination`);
3. names the robustness conditions (:mod:`faceops.evaluation.conditions`) the gate should judge
   (:func:`gate_conditions`).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceops.training.config import AugmentConfig, DriftTarget, TrainConfig

__all__ = [
    "blur_sigma_band",
    "choose_illumination",
    "condition_severities",
    "degrade_like",
    "describe_drift",
    "drift_signature",
    "drift_target",
    "gate_conditions",
    "gate_for_drift",
    "plan_augment",
    "plan_run",
]

log = logging.getLogger(__name__)

# Sharpness (variance of the Laplacian) of an aligned 160 px crop after a Gaussian blur of sigma px, over the
# sharp crop's: medians over 30 LFW crops. Used backwards: a measured ratio -> the sigma that explains it.
_BLUR_RATIO = ((0.0, 1.0), (0.5, 0.527), (1.0, 0.144), (1.5, 0.0707), (2.0, 0.0394), (2.5, 0.0261), (3.0, 0.0194), (4.0, 0.0133))
_DARK = 0.85  # brightness ratios below this count as a darkening worth training for
_BLURRY = 0.5  # sharpness ratios below this count as blur worth training for


def describe_drift(features: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Direction and size of each drifted feature: ``reference`` and ``current`` means, their difference and
    ratio, and ``direction`` ('up' / 'down'), from the monitor's per-feature drift entries (dicts with
    ``feature``, ``drifted``, ``reference_mean``, ``current_mean``)."""
    out = []
    for entry in features:
        if not entry.get("drifted"):
            continue
        ref, cur = entry.get("reference_mean"), entry.get("current_mean")
        item: dict[str, Any] = {"feature": entry["feature"], "reference": ref, "current": cur}
        if ref is not None and cur is not None:
            item["change"] = round(float(cur) - float(ref), 6)
            item["ratio"] = round(float(cur) / float(ref), 6) if ref else None
            item["direction"] = "up" if cur > ref else "down" if cur < ref else "none"
        out.append(item)
    return out


def drift_target(described: Sequence[Mapping[str, Any]]) -> DriftTarget | None:
    """What training can act on in a drift description (:func:`describe_drift`), or ``None`` when nothing: a
    darker or brighter crop, a blurrier one."""
    ratios = {d["feature"]: d.get("ratio") for d in described}
    brightness, blur = ratios.get("brightness"), ratios.get("blur")
    if brightness is None and blur is None:
        return None
    return DriftTarget(
        brightness_ratio=brightness if brightness and brightness > 0 else None,
        blur_ratio=blur if blur and blur > 0 else None,
        drifted=tuple(d["feature"] for d in described),
    )


def drift_signature(target: Mapping[str, Any] | DriftTarget | None) -> tuple[str, ...]:
    """What a drift is, for recognising it again: e.g. ``('brightness down', 'blur up')``."""
    if target is None:
        return ()
    t = target if isinstance(target, DriftTarget) else DriftTarget.model_validate(dict(target))
    out = []
    if t.brightness_ratio is not None and t.brightness_ratio < _DARK:
        out.append("brightness down")
    elif t.brightness_ratio is not None and t.brightness_ratio > 1 / _DARK:
        out.append("brightness up")
    if t.blur_ratio is not None and t.blur_ratio < _BLURRY:
        out.append("blur up")
    return tuple(out)


def blur_sigma_band(blur_ratio: float, brightness_ratio: float | None = None) -> tuple[float, float]:
    """The Gaussian sigmas (px on the aligned crop) that explain a loss of sharpness.

    A darker crop loses sharpness too (the Laplacian scales with contrast: by the brightness ratio squared), and
    JPEG noise adds some back; the band runs from the sigma of the ratio corrected for darkness to the sigma of
    the raw ratio."""
    ratios = [blur_ratio]
    if brightness_ratio:
        ratios.append(min(1.0, blur_ratio / brightness_ratio**2))
    sigmas = [_sigma_of(r) for r in ratios]
    low, high = min(sigmas), max(sigmas)
    return round(max(low, 0.1), 2), round(max(high, low, 0.1), 2)


def _sigma_of(ratio: float) -> float:
    sigmas = np.array([s for s, _ in _BLUR_RATIO])
    logs = np.log(np.array([r for _, r in _BLUR_RATIO]))
    return float(np.interp(np.log(max(ratio, 1e-6)), logs[::-1], sigmas[::-1]))


def plan_augment(target: DriftTarget, base: AugmentConfig) -> AugmentConfig:
    """The run's augmentation with the drift added: half the augmented copies darkened into the measured band,
    half blurred in the sigma band, and at least two copies."""
    update: dict[str, Any] = {"copies": max(base.copies, 2)}
    if target.brightness_ratio is not None and target.brightness_ratio < _DARK:
        r = target.brightness_ratio
        update.update(dark_prob=0.5, dark_range=(round(max(0.05, r * 0.75), 3), round(min(1.0, r * 1.3), 3)))
    elif target.brightness_ratio is not None and target.brightness_ratio > 1 / _DARK:
        update["color_jitter"] = round(min(1.0, max(base.color_jitter, target.brightness_ratio - 1.0)), 3)
    if target.blur_ratio is not None and target.blur_ratio < _BLURRY:
        low, high = blur_sigma_band(target.blur_ratio, target.brightness_ratio)
        update.update(blur_prob=0.5, blur_min_sigma=min(low, 5.0), blur_sigma=min(max(high, low), 5.0))
    return base.model_copy(update=update)


def gate_conditions(target: DriftTarget) -> list[str]:
    """The robustness conditions (:mod:`faceops.evaluation.conditions`) that stand for the drift."""
    names = []
    if target.brightness_ratio is not None and target.brightness_ratio < _DARK:
        names.append("underexposure")
    elif target.brightness_ratio is not None and target.brightness_ratio > 1 / _DARK:
        names.append("overexposure")
    if target.blur_ratio is not None and target.blur_ratio < _BLURRY:
        names.append("gaussian_blur")
    return names


def condition_severities(target: DriftTarget, crop_face: float = 160 / 1.3) -> dict[str, float]:
    """Severities of the gate's conditions (:mod:`faceops.evaluation.conditions`) that match the measured drift:
    ``underexposure`` whose mean darkening of a mid-grey face equals the brightness ratio, ``gaussian_blur`` whose
    sigma (``s * face / 25``) is the middle of the sigma band (``crop_face``: the face's side in crop pixels)."""
    out: dict[str, float] = {}
    names = gate_conditions(target)
    if "underexposure" in names and target.brightness_ratio is not None:
        grid = np.linspace(0.0, 1.0, 101)
        grey = 0.45  # about the mean level of a face crop
        darkening = (1 - 0.7 * grid) * grey ** (1 + 1.5 * grid) / grey
        out["underexposure"] = round(float(grid[np.argmin(np.abs(darkening - target.brightness_ratio))]), 2)
    if "gaussian_blur" in names and target.blur_ratio is not None:
        sigma = float(np.mean(blur_sigma_band(target.blur_ratio, target.brightness_ratio)))
        out["gaussian_blur"] = round(float(np.clip(sigma * 25.0 / crop_face, 0.0, 1.0)), 2)
    return out


def gate_for_drift(target: DriftTarget, gate: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run config's ``gate`` with robustness criteria on the drift's conditions at matched severities, so
    the challenger is judged on the drifted condition as well as on clean data (an existing ``robustness``
    section keeps its other settings and gains these conditions)."""
    gate = dict(gate or {})
    names = gate_conditions(target)
    if not names:
        return gate
    robustness = dict(gate.get("robustness") or {})
    conditions = list(dict.fromkeys([*(robustness.get("conditions") or []), *names]))
    robustness.update(conditions=conditions, severities={**(robustness.get("severities") or {}), **condition_severities(target)})
    gate["robustness"] = robustness
    return gate


def degrade_like(pixels: np.ndarray, target: DriftTarget, face_scale: float = 1.0) -> np.ndarray:
    """A photo put through the measured drift: brightness scaled by its ratio, blurred by the middle of the
    sigma band (scaled from crop to photo pixels by ``face_scale``), JPEG-compressed at quality 85."""
    from PIL import Image

    out = pixels.astype(np.float32)
    if target.brightness_ratio is not None:
        out = out * target.brightness_ratio
    out_u8 = np.clip(out, 0, 255).astype(np.uint8)
    if target.blur_ratio is not None and target.blur_ratio < 1.0:
        sigma = float(np.mean(blur_sigma_band(target.blur_ratio, target.brightness_ratio))) * face_scale
        if sigma > 0.1:
            out_u8 = np.asarray(cv2.GaussianBlur(out_u8, (0, 0), sigmaX=sigma), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(out_u8).save(buffer, "JPEG", quality=85)
    return np.asarray(Image.open(buffer).convert("RGB"))


def choose_illumination(target: DriftTarget, config: TrainConfig, cache_dir: Path) -> tuple[str, dict[str, Any]]:
    """The illumination step of the run, by measurement on the drifted slice of its data version.

    Every photo of the data version is scored clean (gallery) against its drifted copy (probe) with the
    pretrained model under each candidate step: TAR at the run's target FAR (threshold from the clean impostor
    scores) on the drifted slice and on clean. The best candidate on the drifted slice is kept when it beats
    'none' there and does not lose more clean TAR than ``max_clean_tar_drop`` (default: the gate's
    ``max_tar_drop``); otherwise 'none'.
    """
    from faceops.data.manifest import read_manifest
    from faceops.face.embedding import load_backbone
    from faceops.face.images import load_image
    from faceops.face.recognizer import FaceRecognizer

    rows = read_manifest(config.data_root)
    base = config.preprocess.model_copy(update={"align": config.preprocess.align.model_copy(update={"illumination": "none"})})
    recognizer = FaceRecognizer(base)
    photos = [load_image(Path(config.data_root) / r.path) for r in rows]
    clean, _, clean_err = recognizer.subject_crops(photos)
    drifted, _, drift_err = recognizer.subject_crops([degrade_like(p, target) for p in photos])
    ok = [i for i in range(len(rows)) if i not in clean_err and i not in drift_err]
    identities = np.array([rows[i].identity for i in ok])
    report: dict[str, Any] = {"images": len(rows), "usable": len(ok), "no_face_drifted": len(drift_err), "candidates": {}}
    if len(ok) < 4 or len(set(identities)) < 2:
        report["note"] = "too few usable photos to measure: illumination left as configured"
        return config.preprocess.align.illumination, report
    backbone, _ = load_backbone()
    far = config.evaluation.target_far
    for method in target.illumination_candidates:
        gallery = _embed(backbone, clean[ok], method)
        probe = _embed(backbone, drifted[ok], method)
        report["candidates"][method] = {
            "drifted_tar": _tar(gallery @ probe.T, gallery @ gallery.T, identities, far),
            "clean_tar": _tar(gallery @ gallery.T, gallery @ gallery.T, identities, far),
        }
    figures = report["candidates"]
    baseline = figures.get("none") or next(iter(figures.values()))
    tolerance = target.max_clean_tar_drop if target.max_clean_tar_drop is not None else config.gate.max_tar_drop
    report["max_clean_tar_drop"] = tolerance
    allowed = [m for m, f in figures.items() if f["clean_tar"] >= baseline["clean_tar"] - tolerance - 1e-9]
    best = max(allowed, key=lambda m: (figures[m]["drifted_tar"], m == "none"))
    chosen = best if figures[best]["drifted_tar"] > baseline["drifted_tar"] else "none"
    report["chosen"] = chosen
    log.info("illumination on the drifted slice: %s -> %s", figures, chosen)
    return chosen, report


def _embed(backbone: Any, crops: np.ndarray, method: str) -> np.ndarray:
    import torch

    from faceops.face.embedding import standardize
    from faceops.face.illumination import normalize_illumination

    with torch.inference_mode():
        batch = np.stack([normalize_illumination(c, method) for c in crops])
        out = [torch.nn.functional.normalize(backbone(standardize(batch[s : s + 32])), dim=1) for s in range(0, len(batch), 32)]
    return torch.cat(out).numpy()


def _tar(scores: np.ndarray, clean_scores: np.ndarray, identities: np.ndarray, far: float) -> float:
    """TAR over genuine pairs of different photos at the threshold of ``far`` on clean impostor pairs."""
    from faceops.evaluation.metrics import threshold_at_far

    same = identities[:, None] == identities[None, :]
    other = ~np.eye(len(identities), dtype=bool)
    threshold = threshold_at_far(clean_scores[~same], far)
    genuine = scores[same & other]
    return round(float(np.mean(genuine >= threshold)), 4) if len(genuine) else 0.0


def plan_run(config: TrainConfig, cache_dir: Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The run config with its drift turned into augmentation and preprocessing (unchanged without a drift),
    and the plan's record: the target, the augmentation, the illumination measurement, the gate conditions."""
    target = config.drift
    if target is None:
        return config, {}
    augment = plan_augment(target, config.augment)
    plan: dict[str, Any] = {
        "target": target.model_dump(mode="json"),
        "augment": augment.model_dump(mode="json"),
        "gate_conditions": gate_conditions(target),
    }
    illumination: str = config.preprocess.align.illumination
    if target.measure and target.brightness_ratio is not None:
        illumination, plan["illumination_measurement"] = choose_illumination(target, config, cache_dir)
    plan["illumination"] = illumination
    align = config.preprocess.align.model_copy(update={"illumination": illumination})
    preprocess = config.preprocess.model_copy(update={"align": align})
    return config.model_copy(update={"augment": augment, "preprocess": preprocess}), plan
