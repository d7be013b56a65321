"""The steps of the ``train-detector`` pipeline: train FaceOps' own detector, measure it, gate it, promote it.

1. :func:`train_step`: MTCNN pseudo-labels on LFW people outside the verification pairs, then a training run from
   scratch (:mod:`faceops.detector.train`); writes the weights file.
2. :func:`evaluate_step`: the candidate and the champion detector (the registered detector model's ``champion``,
   else MTCNN as the embedder champion's preprocessing sets it) side by side on the same LFW pairs, with their
   faces feeding the embedder champion (``models:/faceops@champion``, else the default model), and on the
   multi-face photos (:mod:`faceops.detector.measure`).
3. :func:`register_step`: registers the weights as a new version of the detector model (``challenger``) with its
   figures, and decides (:mod:`faceops.detector.gate`); the decision is tagged on the version.
4. :func:`promote_step` (only when admitted): ``champion`` on the detector version, and a new version of the
   embedder model whose preprocessing names that detector (:meth:`ModelBundle.with_detector`), made ``champion``,
   so serving (which follows the embedder champion) and the CLI (``--model models:/faceops@champion``) use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from faceops.errors import DatasetError

__all__ = ["evaluate_step", "promote_step", "register_step", "train_step"]


def _datasets() -> Path:
    from faceops.settings import get_settings

    return get_settings().shared_dir / "datasets"


def _lfw_root(lfw_root: str | Path | None) -> Path:
    root = Path(lfw_root) if lfw_root else _datasets() / "lfw"
    if not (root / "pairs.txt").is_file():
        raise DatasetError(f"no LFW with pairs.txt at {root}: set lfw_root (or FACEOPS_SHARED_DIR)")
    return root


def train_step(
    out_dir: str | Path,
    *,
    lfw_root: str | Path | None = None,
    photos: int = 400,
    train: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Pseudo-label ``photos`` LFW training photos (spread over the people outside the pairs) with MTCNN and train
    a detector from scratch with the :class:`~faceops.detector.train.DetectorTrainConfig` fields in ``train``.

    Returns:
        the run's summary with ``weights`` (the file written in ``out_dir``) and ``sha256``.
    """
    from faceops.detector.data import label_photos, lfw_split
    from faceops.detector.detect import file_sha256
    from faceops.detector.train import DetectorTrainConfig, save_checkpoint, train_detector

    config = DetectorTrainConfig.model_validate(train or {})
    training, _ = lfw_split(_lfw_root(lfw_root))
    step = max(1, len(training) // max(photos, 1))
    chosen = training[::step][:photos]
    labels = label_photos(chosen)
    result = train_detector(labels, config)
    path = save_checkpoint(result, Path(out_dir) / "detector.pt")
    summary = result.summary()
    summary.pop("history", None)
    final = result.history[-1] if result.history else {}
    return {
        **summary,
        "photos": len(labels),
        "faces": int(sum(len(p.boxes) for p in labels)),
        "final_loss": float(final.get("total", float("nan"))),
        "weights": str(path),
        "sha256": file_sha256(path),
    }


def _embedder_bundle(tracking_uri: str | None) -> tuple[Any, str]:
    """The embedder champion's bundle and its name, else the default model."""
    from faceops import registry
    from faceops.evaluation.bundle import ModelBundle

    version = registry.alias_version(registry.CHAMPION, tracking_uri)
    if version is None:
        return ModelBundle.default(), "the default model"
    champion = registry.load_bundle(f"models:/{registry.MODEL_NAME}@{registry.CHAMPION}", tracking_uri)
    return champion, f"version {version}"


def evaluate_step(
    weights: str | Path,
    out_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    detector_model: str = "",
    net: dict[str, Any] | None = None,
    lfw_root: str | Path | None = None,
    folds: list[int] | None = None,
    pairs_per_fold: int = 0,
    multiface_csv: str | Path | None = None,
) -> dict[str, Any]:
    """Measure the candidate detector (``weights`` decoded with ``net``: NetDetectorSettings fields but the
    checksum) and the champion detector on the same pairs and photos; writes ``evaluation.json`` in ``out_dir``.

    Returns:
        ``candidate`` and ``champion`` figures, ``champion_name``, ``embedder`` and the candidate's ``detector``
        config (the preprocessing's ``detector`` section that names it).
    """
    from faceops import registry
    from faceops.detector.detect import file_sha256
    from faceops.detector.measure import measure_detector, select_pairs
    from faceops.face.config import DetectorConfig, NetDetectorSettings
    from faceops.face.detection import build_detector
    from faceops.face.embedding import Embedder

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_name = detector_model or registry.DETECTOR_MODEL_NAME
    bundle, embedder_name = _embedder_bundle(tracking_uri)
    base = bundle.preprocess.detector
    # MTCNN as the embedder champion's preprocessing sets it (its size and subject policy when it names the net)
    mtcnn_base = base
    if base.kind != "mtcnn":
        mtcnn_base = DetectorConfig(min_face_size=base.min_face_size, subject=base.subject)
    settings = NetDetectorSettings.model_validate({**(net or {}), "weights_sha256": file_sha256(weights)})
    candidate_config = DetectorConfig.model_validate(
        {**mtcnn_base.model_dump(), "kind": "faceops-net", "net": settings.model_dump(), "ladder": ()}
    )
    champion_version = registry.alias_version(registry.CHAMPION, tracking_uri, model=model_name)
    if champion_version is None:
        champion_name, champion = "MTCNN", build_detector(mtcnn_base)
    else:
        champion_file = registry.download_detector(champion_version, out_dir / "champion", model_name, tracking_uri)
        # the champion detector decoded as the embedder champion's preprocessing says, when it names it
        same = base.kind == "faceops-net" and base.net and base.net.weights_sha256 == file_sha256(champion_file)
        champion_settings = base.net if same and base.net else settings.model_copy(
            update={"weights_sha256": file_sha256(champion_file)}
        )
        champion_config = candidate_config.model_copy(update={"net": champion_settings})
        champion_name, champion = f"detector version {champion_version}", build_detector(champion_config, champion_file)
    pairs = select_pairs(_lfw_root(lfw_root) / "pairs.txt", _lfw_root(lfw_root), folds or [1, 2], pairs_per_fold)
    csv_path = Path(multiface_csv) if multiface_csv else _datasets() / "multiface" / "faces.csv"
    embedder = Embedder(bundle.preprocess.embedder, model=bundle.backbone, model_id=bundle.model_id)
    candidate = build_detector(candidate_config, weights)
    out = {
        "candidate": measure_detector(candidate, bundle, pairs, csv_path, embedder),
        "champion": measure_detector(champion, bundle, pairs, csv_path, embedder),
        "champion_name": champion_name,
        "champion_version": champion_version,
        "embedder": embedder_name,
        "detector": candidate_config.model_dump(mode="json"),
    }
    (out_dir / "evaluation.json").write_text(json.dumps(out, indent=2))
    return out


def register_step(
    weights: str | Path,
    evaluation: dict[str, Any],
    *,
    tracking_uri: str | None = None,
    detector_model: str = "",
    gate: dict[str, Any] | None = None,
    reason: str = "",
) -> dict[str, Any]:
    """Register ``weights`` as a new detector version (``challenger``) with its figures and the gate's decision.

    Returns:
        ``version``, ``run_id``, ``decision`` ('promote' or 'reject'), ``reason``, ``problems``, ``figures``.
    """
    from faceops import registry
    from faceops.detector.gate import DetectorGateConfig, decide_detector

    model_name = detector_model or registry.DETECTOR_MODEL_NAME
    decision = decide_detector(
        evaluation["candidate"],
        evaluation["champion"],
        DetectorGateConfig.model_validate(gate or {}),
        champion_name=str(evaluation.get("champion_name", "MTCNN")),
    )
    figures = {
        f"{who}_{key}": float(value)
        for who in ("candidate", "champion")
        for key, value in evaluation[who].items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    tags = {
        "decision": "promote" if decision.admitted else "reject",
        "gate_reason": decision.reason,
        "trigger": reason,
        "detector": json.dumps(evaluation.get("detector", {}), sort_keys=True),
        "evaluated_with": str(evaluation.get("embedder", "")),
    }
    registered = registry.register_detector(weights, figures, tags, model=model_name, uri=tracking_uri)
    return {
        **registered,
        "model": model_name,
        "decision": tags["decision"],
        "reason": decision.reason,
        "problems": decision.problems,
        "figures": decision.figures,
        "detector": evaluation.get("detector", {}),
    }


def promote_step(
    registered: dict[str, Any],
    weights: str | Path,
    *,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """Make the admitted detector version ``champion``, and register the embedder champion with its preprocessing
    naming that detector as a new embedder version, made ``champion`` too.

    Returns:
        ``detector_version``, ``model_version`` (the new embedder version) and ``reason``.
    """
    from faceops import registry
    from faceops.face.config import DetectorConfig

    model_name = str(registered.get("model") or registry.DETECTOR_MODEL_NAME)
    version, reason = str(registered["version"]), str(registered["reason"])
    config = DetectorConfig.model_validate(registered["detector"])
    bundle, embedder_name = _embedder_bundle(tracking_uri)
    netted = bundle.with_detector(weights, config.net)
    netted.metadata = {**netted.metadata, "detector": {"model": model_name, "version": version}}
    model_version = registry.log_bundle(
        netted,
        tracking_uri,
        run_name="register-with-detector",
        tags={"detector_model": model_name, "detector_version": version, "derived_from": embedder_name},
    )
    registry.set_alias(registry.CHAMPION, version, reason, tracking_uri, model=model_name)
    why = f"detector {model_name} version {version} admitted; {embedder_name} with its faces"
    registry.set_alias(registry.CHAMPION, model_version, why, tracking_uri)
    return {"detector_version": version, "model_version": model_version, "reason": reason}
