"""Faster variants of a face model: the same network on ONNX Runtime, its int8 quantisation, or another family.

:func:`build_variant` turns a champion bundle into a variant bundle; nothing here decides whether the variant is
good enough: :mod:`faceops.evaluation.parity` does that, and only an admitted variant is registered.

* ``onnx``: the champion's PyTorch network exported to ONNX (checked against PyTorch), same preprocessing, run by
  ONNX Runtime.
* ``int8``: that export quantised (static QDQ, per-channel weights), calibrated on face crops made with the
  champion's own preprocessing from the calibration images, so the activation ranges are those seen in use.
* ``prune``: structured channel pruning of the champion's PyTorch network (torch-pruning, ``sparsity`` of the
  channels of each dependency group, by L2 magnitude), distilled for a few epochs against the unpruned network's
  embeddings on crops of the calibration images (:mod:`faceops.training.prune`), then exported to ONNX.
* ``bf16``: the champion's PyTorch network run under bfloat16 autocast (``EmbedderConfig.precision: bf16``);
  the bundle records whether this machine has native bf16 arithmetic (:func:`faceops.face.backends.bf16_support`):
  without it (AVX2-only CPUs) oneDNN emulates bf16 and the variant is slower, not faster.
* ``mobilefacenet``: the shared MobileFaceNet ONNX (128-d) with its own preprocessing (5-point ArcFace alignment
  to 112x112, ImageNet normalisation, flip-sum): a different family, not a transformation of the champion.

:func:`optimize_model` is the one flow that ``faceops optimize`` and the pipeline's ``optimize`` step both run:
build the variant, gate it (:func:`~faceops.evaluation.parity.check_parity`), write the decision, log the run and
register the variant only if it was admitted (:func:`log_optimization`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import torch

from faceops.errors import ConfigError, FaceOpsError
from faceops.evaluation.bundle import ModelBundle
from faceops.face.backends import OnnxNet, bf16_support, export_onnx, load_onnx_family, quantize_int8
from faceops.face.config import AlignConfig, EmbedderConfig, PreprocessConfig
from faceops.face.embedding import normalize_crops
from faceops.face.recognizer import FaceRecognizer
from faceops.training.prune import PruneConfig, check_sparsity, prune_and_distill

if TYPE_CHECKING:
    from faceops.evaluation.parity import ParityConfig, ParityDecision

__all__ = [
    "FAMILY_MOBILEFACENET",
    "METHODS",
    "Method",
    "OptimizeResult",
    "build_variant",
    "calibration_crops",
    "log_optimization",
    "mobilefacenet_preprocess",
    "optimize_model",
]

log = logging.getLogger(__name__)

Method = Literal["onnx", "int8", "prune", "bf16", "mobilefacenet"]
METHODS: tuple[str, ...] = get_args(Method)
FAMILY_MOBILEFACENET = "mobilefacenet"

Progress = Callable[[str], None]


def mobilefacenet_preprocess(detector_of: PreprocessConfig) -> PreprocessConfig:
    """MobileFaceNet's preprocessing (see ``weights/SOURCE.md``) with the detector of ``detector_of``, so the
    two families differ only in what comes after detection."""
    return PreprocessConfig(
        detector=detector_of.detector,
        align=AlignConfig(method="similarity", template="arcface", image_size=112, margin=0.0),
        embedder=EmbedderConfig(normalization="imagenet", flip_average=True, backend="onnxruntime"),
    )


def calibration_crops(
    preprocess: PreprocessConfig,
    images: Sequence[str | Path],
    batch_size: int = 16,
    purpose: str = "int8 calibration",
    detector_weights: str | Path | None = None,
) -> list[np.ndarray]:
    """Normalised crops ``(n, 3, S, S)`` of the subject face of each image, in batches, as the network sees them.

    Images with no face (or unreadable ones) are skipped and logged.

    Args:
        purpose: what the crops are for, as errors name it.
        detector_weights: the trained detector's weights, when ``preprocess`` names one (the model's bundle has them).

    Raises:
        FaceOpsError: not one face was found in the images (nothing to calibrate on).
    """
    if not images:
        raise FaceOpsError(f"{purpose} needs images: none were given")
    recognizer = FaceRecognizer(preprocess, detector_weights=detector_weights)
    crops, faces, errors = recognizer.subject_crops(list(images))
    found = [i for i, face in enumerate(faces) if face is not None]
    if errors:
        log.info("calibration: %d of %d images skipped (%s)", len(errors), len(images), next(iter(errors.values())))
    if not found:
        raise FaceOpsError(
            f"no faces found in the {len(images)} calibration image(s) (e.g. {images[0]}): {purpose} needs "
            "photos of faces"
        )
    pixels = normalize_crops(crops[found], preprocess.embedder.normalization)
    return [pixels[i : i + batch_size] for i in range(0, len(pixels), batch_size)]


def _mobilefacenet_path() -> Path:
    from faceops.settings import get_settings

    return Path(get_settings().mobilefacenet_path())


def build_variant(
    champion: ModelBundle,
    method: Method,
    calibration: Sequence[str | Path] | None = None,
    progress: Progress | None = None,
    *,
    mobilefacenet: str | Path | None = None,
    prune: PruneConfig | None = None,
    crops: np.ndarray | None = None,
) -> ModelBundle:
    """Build a variant of ``champion`` by ``method``.

    Args:
        champion: the model to speed up (``onnx``/``int8`` need its PyTorch network).
        method: ``onnx``, ``int8``, ``prune``, ``bf16`` or ``mobilefacenet``.
        calibration: image paths for ``int8`` and ``prune`` (faces of people outside the evaluation pairs).
        progress: called with a line of what is happening.
        mobilefacenet: the MobileFaceNet ONNX file; default: the ``FACEOPS_MOBILEFACENET`` setting.
        prune: sparsity and distillation settings of ``prune``; default: ``PruneConfig()`` (sparsity 0.25).
        crops: ``prune``: normalised crops ``(n, 3, S, S)`` to distil on, instead of detecting faces in
            ``calibration`` (e.g. to share them between sparsity levels).

    Returns:
        the variant, with its threshold and target FAR copied from the champion (the parity gate recalibrates
        the threshold) and metadata naming the method, the source model and the file size.

    Raises:
        ConfigError: an unknown method, ``onnx``/``int8``/``prune``/``bf16`` of a champion with no PyTorch network,
            or a sparsity outside (0, 1).
        InvalidModelFile: the MobileFaceNet file is missing, damaged or does not fit its preprocessing.
        FaceOpsError: the export, quantisation or pruning failed, or the calibration images have no faces.
    """
    say = progress or (lambda line: log.info("%s", line))
    if method not in METHODS:
        raise ConfigError(f"unknown optimisation method {method!r}; choose one of {', '.join(METHODS)}")
    source = {
        "source_model_id": champion.model_id,
        "source_family": champion.family,
        "source_version": champion.metadata.get("registry_version"),
    }
    family = champion.family
    net: OnnxNet
    if method == "mobilefacenet":
        path = Path(mobilefacenet) if mobilefacenet is not None else _mobilefacenet_path()
        say(f"loading MobileFaceNet from {path}")
        net = load_onnx_family(path)
        preprocess = mobilefacenet_preprocess(champion.preprocess)
        if net.input_size is not None and net.input_size != preprocess.align.image_size:
            raise ConfigError(f"{path} takes {net.input_size}x{net.input_size} crops, MobileFaceNet's are 112x112")
        family = FAMILY_MOBILEFACENET
        source["source_file"] = os.fspath(path)
    else:
        if champion.preprocess.embedder.backend != "torch" or not isinstance(champion.backbone, torch.nn.Module):
            raise ConfigError(
                f"{method} needs a champion with a PyTorch network; this one ({champion.family}) runs on "
                f"{champion.backend}"
            )
        if method == "bf16":  # the same network and weights, bfloat16 arithmetic under autocast
            support = bf16_support()
            say(f"bf16: {support['detail']}")
            embedder = champion.preprocess.embedder.model_copy(update={"precision": "bf16"})
            return ModelBundle(
                backbone=champion.torch_module,
                preprocess=champion.preprocess.model_copy(update={"embedder": embedder}),
                threshold=champion.threshold,
                target_far=champion.target_far,
                model_id=f"{champion.model_id}+bf16",  # same weights, other arithmetic: never the champion's id
                metadata={**{k: v for k, v in source.items() if v is not None}, "method": method, "family": family,
                          "bf16_native": support["native"], "bf16_device": support["device"],
                          "file_bytes": sum(p.numel() * p.element_size() for p in champion.torch_module.parameters()),
                          "data_version": champion.metadata.get("data_version", "")},
                family=family,
                detector_weights=champion.detector_weights,
            )
        side = champion.preprocess.align.image_size
        # Calibration crops first: images without faces fail before the export's minute of work.
        batches = (
            calibration_crops(champion.preprocess, calibration or [], detector_weights=champion.detector_weights)
            if method == "int8"
            else []
        )
        module = champion.torch_module
        if method == "prune":
            settings = prune or PruneConfig()
            check_sparsity(settings.sparsity)
            if crops is None:
                crops = np.concatenate(
                    calibration_crops(
                        champion.preprocess,
                        calibration or [],
                        purpose="pruning distillation",
                        detector_weights=champion.detector_weights,
                    )
                )
            elif len(crops) == 0:
                raise FaceOpsError("pruning distillation needs face crops: none were given")
            module, report = prune_and_distill(module, crops, settings, side, say)
            source.update(
                {"sparsity": settings.sparsity, "prune": {**report.to_dict(), "config": settings.model_dump()},
                 "params": report.params_after, "macs": report.macs_after,
                 "calibration_faces": len(crops), "calibration_images": len(calibration or [])}
            )
        say(f"exporting {champion.family} to ONNX ({side}x{side} crops)")
        net = export_onnx(module, side)
        embedder = champion.preprocess.embedder.model_copy(update={"backend": "onnxruntime"})
        if method == "int8":
            say(f"quantising to int8 on {sum(len(b) for b in batches)} calibration crops")
            net = quantize_int8(net, batches)
            embedder = embedder.model_copy(update={"precision": "int8"})
            source["calibration_faces"] = sum(len(b) for b in batches)
            source["calibration_images"] = len(calibration or [])
        preprocess = champion.preprocess.model_copy(update={"embedder": embedder})
    return ModelBundle(
        backbone=net,
        preprocess=preprocess,
        threshold=champion.threshold,
        target_far=champion.target_far,
        metadata={
            **{k: v for k, v in source.items() if v is not None},
            "method": method,
            "family": family,
            "file_bytes": len(net.model_bytes),
            "data_version": champion.metadata.get("data_version", ""),
        },
        family=family,
        detector_weights=champion.detector_weights,  # every variant keeps the champion's detector
    )


def _run_metrics(figures: dict[str, Any], far: str, prefix: str = "") -> dict[str, float]:
    lfw = figures["lfw"]
    out = {
        "lfw_accuracy": lfw["accuracy"],
        "lfw_auc": lfw["auc"],
        f"lfw_tar_at_far_{far}": lfw["tar_at_far"],
        "lfw_heldout_far": lfw["heldout_far"],
        "lfw_threshold": lfw["threshold"],
        "embed_ms_per_face": lfw["embed_ms_per_face"],
    }
    if "data" in figures:
        data = figures["data"]
        out.update(
            {
                "data_closed_accuracy": data["accuracy"],
                f"data_tar_at_far_{far}": data["tar_at_far"],
                "data_heldout_far": data["heldout_far"],
            }
        )
    return {prefix + k: float(v) for k, v in out.items() if v is not None}


def _prune_params(metadata: dict[str, Any]) -> dict[str, Any]:
    prune = metadata.get("prune")
    if not prune:
        return {}
    config = prune.get("config", {})
    return {"sparsity": metadata.get("sparsity"), **{f"distill_{k}": v for k, v in config.items() if k != "sparsity"}}


def _prune_metrics(metadata: dict[str, Any]) -> dict[str, float]:
    prune = metadata.get("prune")
    if not prune:
        return {}
    keys = ("params_before", "params_after", "macs_before", "macs_after", "loss_before", "loss_after", "distill_s")
    return {f"prune_{k}": float(prune[k]) for k in keys if prune.get(k) is not None}


def log_optimization(
    variant: ModelBundle, decision: ParityDecision, source: str, uri: str | None = None
) -> str | None:
    """Log the gate's run to MLflow (params, both models' figures, the decision) and register the variant as
    ``challenger`` only if it was admitted.

    Returns:
        the new model version, or None when the variant was refused (then nothing is registered).
    """
    from faceops import registry

    method = str(variant.metadata.get("method", "custom"))
    far = f"{decision.config.get('target_far', variant.target_far):g}"
    tags = {"faceops.kind": "optimize", "method": method, "admitted": str(decision.admitted).lower()}
    with registry.open_run(f"optimize-{method}", uri, tags=tags) as run:
        run.log_params(
            {
                "method": method,
                "family": variant.family,
                "backend": variant.backend,
                "precision": variant.preprocess.embedder.precision,
                **({"bf16_native": variant.metadata.get("bf16_native"), "bf16_device": variant.metadata.get("bf16_device")}
                   if variant.preprocess.embedder.precision == "bf16" else {}),
                "source": source,
                "lfw_folds": ",".join(map(str, decision.config.get("folds", []))),
                "pairs_per_fold": decision.config.get("pairs_per_fold"),
                **_prune_params(variant.metadata),
            }
        )
        run.log_metrics(
            {
                **_run_metrics(decision.variant, far),
                **_run_metrics(decision.champion, far, "champion_"),
                "model_file_mb": int(variant.metadata.get("file_bytes", 0)) / 1e6,
                **_prune_metrics(variant.metadata),
            }
        )
        run.log_dict(decision.to_dict(), "parity.json")
        if decision.reasons:
            run.set_tags({"refused_because": "; ".join(decision.reasons)[:5000]})
        if not decision.admitted:
            return None
        return run.log_bundle(variant, tags={"faceops.kind": "optimized", "method": method})


@dataclass
class OptimizeResult:
    """What :func:`optimize_model` did: the variant (its threshold recalibrated), the gate's decision, where the
    decision (and an admitted variant's bundle) were written, and the registered version (None: not registered)."""

    variant: ModelBundle
    decision: ParityDecision
    decision_path: Path
    bundle_dir: Path | None = None
    version: str | None = None


def optimize_model(
    champion: ModelBundle,
    method: Method,
    config: ParityConfig,
    *,
    source: str,
    cache_dir: Path,
    out_dir: Path,
    calibration: Sequence[str | Path] | None = None,
    prune: PruneConfig | None = None,
    data_root: Path | None = None,
    register: bool = True,
    save_bundle: bool = True,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
) -> OptimizeResult:
    """Build ``method``'s variant of ``champion``, gate it, write ``decision.json`` under ``out_dir`` and, with
    ``register``, log the run to MLflow and register the variant as ``challenger`` only if it was admitted.

    Args:
        source: what ``champion`` was loaded from (``models:/faceops/3``, a folder), recorded with the variant.
        cache_dir: the crop cache the gate reads and fills.
        out_dir: where ``decision.json`` and (``save_bundle``, admitted only) ``bundle/`` go.
        calibration: ``int8`` calibration / ``prune`` distillation photos.
        prune: ``prune``'s sparsity and distillation settings.
        data_root: also gate on this data version.

    Raises:
        the errors of :func:`build_variant` and :func:`~faceops.evaluation.parity.check_parity`; a refusal is not
        an error (``result.decision.admitted`` is false, with the reasons).
    """
    from faceops.evaluation.parity import check_parity

    say = progress or (lambda line: log.info("%s", line))
    variant = build_variant(champion, method, calibration, say, prune=prune)
    variant.metadata["source"] = source
    say(f"scoring both models on LFW folds {','.join(map(str, config.folds))}"
        + (f" and the data version {data_root}" if data_root else ""))
    decision = check_parity(champion, variant, config, cache_dir=cache_dir, data_root=data_root)
    variant.metadata["parity"] = {"admitted": decision.admitted, "reasons": decision.reasons}
    out_dir.mkdir(parents=True, exist_ok=True)
    decision_path = out_dir / "decision.json"
    decision_path.write_text(json.dumps(decision.to_dict(), indent=2, default=str))
    result = OptimizeResult(variant, decision, decision_path)
    if decision.admitted and save_bundle:
        result.bundle_dir = variant.save(out_dir / "bundle")
    if register:
        result.version = log_optimization(variant, decision, source, tracking_uri)
    return result
