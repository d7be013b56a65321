"""Component ``optimize``: a faster variant of the new champion, registered and promoted only through the parity gate."""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import Artifact, Metrics, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def optimize(
    data: dict,
    run_config: dict,
    store: str,
    method: str,
    lfw_pairs: str,
    lfw_folds: list,
    pairs_per_fold: int,
    promote: bool,
    sparsity: float,
    epochs: int,
    tracking_uri: str,
    decision: Output[Artifact],
    metrics: Output[Metrics],
) -> str:
    """Build ``method``'s variant (``mobilefacenet``, ``onnx``, ``int8``, ``bf16``, or ``prune`` with ``sparsity`` of the
    channels removed and ``epochs`` of distillation) of the champion, score both on LFW's pairs
    ``lfw_folds`` (``lfw_pairs`` empty: the shared datasets' copy; ``pairs_per_fold`` 0: all pairs) and the data
    version (thresholds recalibrated at the run config's target FAR), register it as challenger if admitted and,
    with ``promote``, make it the champion.

    Returns ``promoted``, ``admitted`` (registered, not promoted), ``refused`` or ``skipped`` (``method`` empty);
    ``decision`` holds the parity figures and the reasons.
    """
    from pathlib import Path

    from faceops.kfp.components._io import folder, log_metrics

    from faceops.steps.context import step_inputs
    from faceops.steps.context import tracking_uri as resolve_tracking
    from faceops.steps.data import train_config
    from faceops.steps.optimize import optimize_champion

    out = folder(decision)
    if not method:
        decision.metadata.update({"method": "", "admitted": False, "version": None, "promoted": False})
        log_metrics(metrics, {"admitted": 0.0, "promoted": 0.0})
        print("optimize: no method given, nothing done")
        return "skipped"
    with step_inputs(data, store, run_config, trunk=False) as inputs:
        config = train_config(run_config, inputs.data_dir, out)
        outcome = optimize_champion(
            method,
            cache_dir=inputs.cache_dir,
            out_dir=out,
            tracking_uri=resolve_tracking(tracking_uri),
            data_dir=inputs.data_dir,
            lfw_pairs=Path(lfw_pairs) if lfw_pairs else None,
            lfw_folds=[int(f) for f in lfw_folds] or None,
            pairs_per_fold=pairs_per_fold or None,
            target_far=config.evaluation.target_far,
            promote=promote,
            sparsity=sparsity,
            epochs=epochs,
            progress=print,
        )
    decision.metadata.update({k: outcome[k] for k in ("method", "admitted", "version", "promoted")})
    figures = {f"{who}_{k}": v for who in ("champion", "variant") for k, v in (outcome.get(f"{who}_lfw") or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    log_metrics(metrics, {**figures, "admitted": float(outcome["admitted"]), "promoted": float(outcome["promoted"])})
    print(f"{method}: {'admitted' if outcome['admitted'] else 'refused'} ({'; '.join(outcome.get('reasons') or [])})")
    return "promoted" if outcome["promoted"] else "admitted" if outcome["admitted"] else "refused"
