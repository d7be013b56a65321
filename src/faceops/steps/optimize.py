"""The ``optimize`` step of the training pipeline: a faster variant of the new champion, admitted by the parity gate.

After a promotion, the pipeline builds a variant of the champion (by default the MobileFaceNet family, see
:mod:`faceops.face.presets`), scores both on LFW's pairs folds and on the data version each with its own
preprocessing (:mod:`faceops.evaluation.parity`), logs the comparison to MLflow, registers the variant as
``challenger`` only when admitted and, when ``promote`` is set, makes it the champion. A refusal is a normal outcome
(the step succeeds and says why); the champion stays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["optimize_champion"]

log = logging.getLogger(__name__)

CALIBRATION_PHOTOS = 200
"""int8 calibrates, prune distils, on at most this many photos of the data version."""


def optimize_champion(
    method: str,
    *,
    cache_dir: Path,
    out_dir: Path,
    tracking_uri: str | None = None,
    data_dir: Path | None = None,
    lfw_pairs: Path | None = None,
    lfw_folds: list[int] | None = None,
    pairs_per_fold: int | None = None,
    target_far: float = 1e-3,
    promote: bool = True,
    sparsity: float | None = None,
    epochs: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build ``method``'s variant of the current champion, gate it, register and (with ``promote``) promote it.

    Args:
        method: ``mobilefacenet``, ``onnx``, ``int8``, ``prune`` or ``bf16`` (:data:`faceops.optimize.METHODS`).
        cache_dir: the crop cache.
        out_dir: where ``decision.json`` (the gate's figures) and ``outcome.json`` go.
        data_dir: the data version, also scored by the gate; int8 calibrates on its photos.
        lfw_pairs: LFW ``pairs.txt`` (images beside it); default: the shared datasets' copy.
        lfw_folds: the folds the gate scores (default 1-8).
        pairs_per_fold: only this many pairs per fold (quick runs; the FAR check needs the full folds).
        target_far: the FAR the variant's threshold is recalibrated for (the run config's).
        sparsity: ``prune``: the share of channels removed (default: :class:`~faceops.training.prune.PruneConfig`'s).
        epochs: ``prune``: distillation epochs (default: ``PruneConfig``'s).

    Returns:
        the outcome: method, champion version, admitted, reasons, the variant's version and whether it was
        promoted, and both models' LFW figures.
    """
    from faceops import registry
    from faceops.errors import ModelNotFound
    from faceops.evaluation.parity import ParityConfig
    from faceops.face.images import iter_image_paths
    from faceops.optimize import optimize_model
    from faceops.settings import get_settings
    from faceops.training.prune import PruneConfig, check_sparsity

    say = progress or (lambda line: log.info("%s", line))
    prune = None
    if method == "prune":  # checked before any work: a bad sparsity is a failed step, not a refusal
        prune = PruneConfig(
            sparsity=check_sparsity(sparsity) if sparsity is not None else PruneConfig().sparsity,
            epochs=epochs if epochs is not None else PruneConfig().epochs,
        )
    pairs = Path(lfw_pairs) if lfw_pairs else get_settings().shared_dir / "datasets" / "lfw" / "pairs.txt"
    config = ParityConfig(
        lfw_pairs=pairs, lfw_root=pairs.parent, folds=lfw_folds or list(range(1, 9)), pairs_per_fold=pairs_per_fold,
        target_far=target_far,
    )
    champion_version = registry.alias_version(registry.CHAMPION, tracking_uri)
    if champion_version is None:
        raise ModelNotFound(f"no {registry.CHAMPION} to optimise: the registry has none yet")
    source = f"models:/{registry.MODEL_NAME}/{champion_version}"
    champion = registry.load_bundle(source, tracking_uri)
    champion.metadata["registry_version"] = champion_version  # the variant records where it came from
    outcome: dict[str, Any] = {"method": method, "champion_version": champion_version, "source": source,
                               "admitted": False, "version": None, "promoted": False}
    if method == "mobilefacenet" and champion.family == "mobilefacenet":
        outcome["reasons"] = ["the champion is already a MobileFaceNet model"]
        return _write(out_dir, outcome)
    # What the gate needs but a cluster's image may lack: a refusal that says where to put it, not a failed run.
    missing = [] if pairs.is_file() else [f"LFW pairs not found at {pairs} (give the pipeline's optimize_lfw_pairs)"]
    if method == "mobilefacenet" and not Path(get_settings().mobilefacenet_path()).is_file():
        missing.append(f"MobileFaceNet not found at {get_settings().mobilefacenet_path()} (set FACEOPS_MOBILEFACENET)")
    if missing:
        outcome["reasons"] = missing
        say("the variant was not built: " + "; ".join(missing))
        return _write(out_dir, outcome)
    calibration = None
    if method in ("int8", "prune"):  # calibration (int8) or distillation (prune) photos
        calibration = sorted(iter_image_paths([data_dir]))[:CALIBRATION_PHOTOS] if data_dir else []
    result = optimize_model(
        champion, method, config, source=source, cache_dir=cache_dir, out_dir=out_dir,  # type: ignore[arg-type]
        calibration=calibration, prune=prune, data_root=data_dir, save_bundle=False, tracking_uri=tracking_uri,
        progress=say,
    )
    variant, decision, version = result.variant, result.decision, result.version
    outcome.update(
        admitted=decision.admitted,
        reasons=decision.reasons,
        threshold=variant.threshold,
        champion_lfw=_lfw(decision.champion),
        variant_lfw=_lfw(decision.variant),
        **({"sparsity": variant.metadata.get("sparsity")} if method == "prune" else {}),
        **({"bf16_native": variant.metadata.get("bf16_native")} if method == "bf16" else {}),
    )
    outcome["version"] = version
    if version is not None and data_dir is not None:  # what the monitor holds this model's traffic against
        from faceops.steps.model import log_monitoring_reference

        log_monitoring_reference(variant, data_dir, version, registry.version_run_id(version, tracking_uri),
                                 tracking_uri)
    if version is not None and promote:
        reason = f"{method} variant of version {champion_version} admitted by the parity gate"
        registry.set_alias(registry.CHAMPION, version, reason, tracking_uri)
        outcome["promoted"] = True
        say(f"version {version} ({variant.family}) is now the champion: {reason}")
    else:
        say(f"the {method} variant was not promoted: " + ("; ".join(decision.reasons) or "promotion off"))
    return _write(out_dir, outcome)


def _lfw(figures: dict[str, Any]) -> dict[str, Any]:
    lfw = figures["lfw"]
    keep = ("accuracy", "tar_at_far", "threshold", "heldout_far", "embed_ms_per_face", "no_face", "images")
    return {"family": figures.get("family"), **{k: lfw.get(k) for k in keep}}


def _write(out_dir: Path, outcome: dict[str, Any]) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "outcome.json").write_text(json.dumps(outcome, indent=2, default=str))
    return outcome
