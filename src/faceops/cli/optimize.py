"""``faceops optimize``: build a faster variant of a model, gate it on accuracy parity, register it if admitted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from faceops.cli._common import echo_json, json_option

__all__ = ["optimize"]


def _folds(text: str) -> list[int]:
    """``1-8`` or ``1,2,5`` -> fold numbers."""
    try:
        if "-" in text:
            first, last = (int(v) for v in text.split("-", 1))
            return list(range(first, last + 1))
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: give folds as '1-8' or '1,2,5'", param_hint="--lfw-folds") from exc


@click.command()
@click.option("--from", "source", required=True,
              help="The model to speed up: models:/faceops@champion, models:/faceops/3, or a bundle folder.")
@click.option("--method", type=click.Choice(["onnx", "int8", "prune", "bf16", "mobilefacenet"]), required=True,
              help="onnx: the same network on ONNX Runtime; int8: its static int8 quantisation (needs "
                   "--calibration); prune: structured channel pruning + distillation on --calibration faces, on "
                   "ONNX Runtime; bf16: the PyTorch network under bfloat16 autocast (says whether this machine "
                   "has native bf16); mobilefacenet: the MobileFaceNet family with its own preprocessing.")
@click.option("--sparsity", type=float, default=0.25, show_default=True,
              help="prune: share of the channels of each group removed, strictly between 0 and 1.")
@click.option("--epochs", "distill_epochs", type=click.IntRange(0, 100), default=3, show_default=True,
              help="prune: distillation epochs over the calibration faces (0: prune only).")
@click.option("--lfw-folds", default="1-8", show_default=True, help="LFW pairs folds the gate scores, e.g. 1-8.")
@click.option("--lfw-pairs", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="LFW pairs.txt; default: <FACEOPS_SHARED_DIR>/datasets/lfw/pairs.txt.")
@click.option("--lfw-root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="LFW images; default: the pairs file's folder.")
@click.option("--pairs-per-fold", type=click.IntRange(2, 600), default=None,
              help="Score only this many pairs of each fold (quick checks); default: all.")
@click.option("--target-far", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=1e-3,
              show_default=True, help="The FAR the variant's threshold is recalibrated for (and TAR measured at).")
@click.option("--data", "data_root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Also gate on this data version (a folder with manifest.csv).")
@click.option("--calibration", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="int8, prune: a folder of face photos to calibrate / distil on (people outside the evaluation "
                   "pairs).")
@click.option("--tracking-uri", default=None,
              help="MLflow tracking URI; default: FACEOPS_MLFLOW_TRACKING_URI (sqlite:///mlruns.db).")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Log the run to MLflow and register an admitted variant as challenger.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the decision and the variant bundle are written; default: outputs/optimize/<method>.")
@json_option
def optimize(
    source: str,
    method: str,
    sparsity: float,
    distill_epochs: int,
    lfw_folds: str,
    lfw_pairs: Path | None,
    lfw_root: Path | None,
    pairs_per_fold: int | None,
    target_far: float,
    data_root: Path | None,
    calibration: Path | None,
    tracking_uri: str | None,
    register: bool,
    out: Path | None,
    as_json: bool,
) -> None:
    """Build a faster variant of a model and register it as challenger only if the parity gate admits it.

    The gate scores both models on LFW pairs (and --data), each with its own preprocessing; it refuses a variant
    whose accuracy drops more than 0.3 points, whose TAR at FAR 1e-3 drops more than 0.5 points, or whose
    recalibrated threshold misses the target FAR on held-out folds. A refusal exits 1 and says why.
    """
    from faceops import registry
    from faceops.errors import FaceOpsError
    from faceops.evaluation.parity import ParityConfig
    from faceops.face.images import iter_image_paths
    from faceops.optimize import optimize_model
    from faceops.settings import get_settings
    from faceops.training.prune import PruneConfig, check_sparsity

    settings = get_settings()
    pairs = lfw_pairs or settings.shared_dir / "datasets" / "lfw" / "pairs.txt"
    if not pairs.is_file():
        raise click.BadParameter(f"{pairs} not found: give --lfw-pairs", param_hint="--lfw-pairs")
    folds = _folds(lfw_folds)
    if len(folds) < 2:
        raise click.BadParameter("the gate needs two folds or more (thresholds come from the other folds)",
                                 param_hint="--lfw-folds")
    if method in ("int8", "prune") and calibration is None:
        raise click.UsageError(f"--method {method} needs --calibration DIR (face photos to calibrate on)")
    prune = None
    if method == "prune":
        check_sparsity(sparsity)
        prune = PruneConfig(sparsity=sparsity, epochs=distill_epochs)
    config = ParityConfig(lfw_pairs=pairs, lfw_root=lfw_root or pairs.parent, folds=folds,
                          pairs_per_fold=pairs_per_fold, target_far=target_far)
    out = out or settings.output_dir / "optimize" / method

    def say(line: str) -> None:
        click.echo(line, err=True)

    champion = registry.load_bundle(source, tracking_uri)
    images = list(iter_image_paths([calibration])) if calibration is not None else None
    if images is not None and not images:
        raise FaceOpsError(f"{calibration} holds no images to calibrate on")
    result = optimize_model(
        champion, method, config, source=source, cache_dir=settings.cache_dir, out_dir=out,  # type: ignore[arg-type]
        calibration=images, prune=prune, data_root=data_root, register=register, tracking_uri=tracking_uri,
        progress=say,
    )
    variant, decision = result.variant, result.decision
    keys = ("accuracy", "tar_at_far", "heldout_far", "embed_ms_per_face")
    summary: dict[str, Any] = {
        "method": method, "family": variant.family, "backend": variant.backend,
        "precision": variant.preprocess.embedder.precision, "sparsity": variant.metadata.get("sparsity"),
        "params": variant.metadata.get("params"), "bf16_native": variant.metadata.get("bf16_native"),
        "admitted": decision.admitted, "reasons": decision.reasons, "threshold": variant.threshold,
        "file_mb": variant.metadata["file_bytes"] / 1e6,
        "champion": {k: decision.champion["lfw"][k] for k in keys},
        "variant": {k: decision.variant["lfw"][k] for k in keys},
        "decision": str(result.decision_path), "bundle": str(result.bundle_dir) if result.bundle_dir else None,
        "version": result.version,
    }
    if as_json:
        echo_json(summary)
    else:
        _print(summary)
    if not decision.admitted:
        raise FaceOpsError(f"the {method} variant was refused by the parity gate (nothing registered): "
                           + "; ".join(decision.reasons))


def _print(s: dict[str, Any]) -> None:
    c, v = s["champion"], s["variant"]
    click.echo(f"{s['method']}: {s['family']} on {s['backend']} ({s['precision']}), {s['file_mb']:.1f} MB")
    if s["bf16_native"] is not None:
        click.echo(f"  bf16 {'native on this machine' if s['bf16_native'] else 'emulated (no native bf16 here)'}")
    for label, key, scale, unit in (("LFW accuracy", "accuracy", 100, "%"), ("TAR @ target FAR", "tar_at_far", 100, "%"),
                                    ("held-out FAR", "heldout_far", 1, ""), ("embed ms/face", "embed_ms_per_face", 1, "")):
        click.echo(f"  {label:<17} champion {scale * c[key]:.4g}{unit}  variant {scale * v[key]:.4g}{unit}")
    if s["admitted"]:
        where = f"registered as challenger (version {s['version']})" if s["version"] else "not registered"
        click.echo(f"admitted: threshold {s['threshold']:.4f}; bundle {s['bundle']}; {where}")
