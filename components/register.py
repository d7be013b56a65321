"""Components ``register-and-gate`` (register the challenger, decide) and ``promote`` (move champion)."""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import Artifact, Input, Model, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register_and_gate(
    data: dict,
    run_config: dict,
    max_accuracy_drop: float,
    max_far_increase: float,
    min_tar_at_far: float,
    trigger: str,
    tracking_uri: str,
    store: str,
    data_info: dict,
    model: Input[Model],
    evaluation: Input[Artifact],
    registered: Output[Artifact],
) -> str:
    """Register ``model`` as challenger in MLflow and compare it with the champion.

    Returns the decision, 'promote' or 'reject', on which the pipeline branches (``dsl.If``); ``registered``
    carries the model version, the reason and the key metrics as metadata (its file holds the same as JSON).
    Every input is in place before MLflow is touched (the tracking server answers first), so a failure leaves
    no half-registered model.
    """
    import json
    from pathlib import Path

    from faceops.steps.context import step_inputs
    from faceops.steps.context import tracking_uri as resolve_tracking
    from faceops.steps.model import register_and_gate as run

    gate = {
        "max_accuracy_drop": max_accuracy_drop,
        "max_far_increase": max_far_increase,
        "min_tar_at_far": min_tar_at_far,
    }
    uri = resolve_tracking(tracking_uri)
    with step_inputs(data, store, run_config) as inputs:
        out = run(
            model.path,
            evaluation.path,
            inputs.data_dir,
            run_config,
            cache_dir=inputs.cache_dir,
            gate=gate,
            tracking_uri=uri,
            data_info=data_info,
            trigger=trigger,
            reports_uri=evaluation.uri,
        )
    registered.metadata.update(out)
    Path(registered.path).parent.mkdir(parents=True, exist_ok=True)
    Path(registered.path).write_text(json.dumps(out, indent=2))
    print(f"model version {out['version']}: {out['decision']} ({out['reason']})")
    return out["decision"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def promote(registered: Input[Artifact], tracking_uri: str) -> str:
    """Make the registered version the champion (the alias serving loads), with the gate's reason."""
    from faceops.steps.context import tracking_uri as resolve_tracking
    from faceops.steps.model import promote as run

    version, reason = str(registered.metadata["version"]), str(registered.metadata["reason"])
    run(version, reason, resolve_tracking(tracking_uri))
    print(f"model version {version} is now the champion: {reason}")
    return version
