"""Components of the ``train-detector`` pipeline: ``train-detector``, ``evaluate-detector``,
``register-detector`` (register and gate) and ``promote-detector`` (bodies in :mod:`faceops.steps.detector`)."""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_detector(lfw_root: str, photos: int, train: dict, detector: Output[Model], metrics: Output[Metrics]) -> None:
    """MTCNN pseudo-labels on ``photos`` LFW photos of people outside the pairs (``lfw_root`` empty: the shared
    datasets' copy), then a detector trained from scratch with ``train`` (DetectorTrainConfig fields)."""
    from faceops.kfp.components._io import folder, log_metrics

    from faceops.steps.detector import train_step

    out = train_step(folder(detector), lfw_root=lfw_root or None, photos=photos, train=train)
    detector.metadata.update({"file": "detector.pt", "sha256": out["sha256"]})
    log_metrics(metrics, {k: out[k] for k in ("photos", "faces", "final_loss", "seconds", "mmac_320", "parameters")})
    print(f"detector trained on {out['photos']} photos ({out['faces']} faces) in {out['seconds']} s")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate_detector(
    detector: Input[Model],
    net: dict,
    lfw_root: str,
    lfw_folds: list,
    pairs_per_fold: int,
    multiface_csv: str,
    detector_model: str,
    tracking_uri: str,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
) -> None:
    """The candidate and the champion detector side by side: LFW verification through the embedder champion and
    recall on the multi-face photos."""
    from pathlib import Path

    from faceops.kfp.components._io import folder, log_metrics

    from faceops.steps.context import tracking_uri as resolve_tracking
    from faceops.steps.detector import evaluate_step

    out = evaluate_step(
        Path(detector.path) / "detector.pt",
        folder(evaluation),
        tracking_uri=resolve_tracking(tracking_uri),
        detector_model=detector_model,
        net=net,
        lfw_root=lfw_root or None,
        folds=[int(f) for f in lfw_folds] or None,
        pairs_per_fold=pairs_per_fold,
        multiface_csv=multiface_csv or None,
    )
    keys = ("lfw_accuracy", "multiface_recall")
    figures = {f"{who}_{key}": out[who][key] for who in ("candidate", "champion") for key in keys}
    log_metrics(metrics, figures)
    print(f"candidate against {out['champion_name']}: {figures}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register_detector(
    detector: Input[Model],
    evaluation: Input[Artifact],
    max_accuracy_drop: float,
    max_recall_drop: float,
    detector_model: str,
    reason: str,
    tracking_uri: str,
    registered: Output[Artifact],
) -> str:
    """Register the detector as a new version of its model (``challenger``) and decide against the champion
    detector; returns 'promote' or 'reject' (``registered`` holds the version, the reason and the figures)."""
    import json
    from pathlib import Path

    from faceops.steps.context import tracking_uri as resolve_tracking
    from faceops.steps.detector import register_step

    result = json.loads((Path(evaluation.path) / "evaluation.json").read_text())
    out = register_step(
        Path(detector.path) / "detector.pt",
        result,
        tracking_uri=resolve_tracking(tracking_uri),
        detector_model=detector_model,
        gate={"max_accuracy_drop": max_accuracy_drop, "max_recall_drop": max_recall_drop},
        reason=reason,
    )
    registered.metadata.update({k: out[k] for k in ("version", "model", "decision", "reason")})
    Path(registered.path).parent.mkdir(parents=True, exist_ok=True)
    Path(registered.path).write_text(json.dumps(out, indent=2))
    print(f"detector version {out['version']}: {out['decision']} ({out['reason']})")
    return out["decision"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def promote_detector(detector: Input[Model], registered: Input[Artifact], tracking_uri: str) -> str:
    """``champion`` on the admitted detector, and a new champion version of the embedder whose preprocessing names
    it (serving and the CLI follow the embedder champion)."""
    import json
    from pathlib import Path

    from faceops.steps.context import tracking_uri as resolve_tracking
    from faceops.steps.detector import promote_step

    out = promote_step(
        json.loads(Path(registered.path).read_text()),
        Path(detector.path) / "detector.pt",
        tracking_uri=resolve_tracking(tracking_uri),
    )
    print(f"detector version {out['detector_version']} and model version {out['model_version']} are champions")
    return str(out["model_version"])
