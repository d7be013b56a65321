"""Component ``robustness``: the trained bundle through the robustness suite (image conditions, slices, groups)."""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def robustness(
    data: dict,
    run_config: dict,
    store: str,
    model: Input[Model],
    robustness: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
    conditions: str = "",
    pairs: str = "",
    folds: str = "",
    seed: int = 0,
    max_pairs: int = 3000,
):
    """Run the suite on ``model``: ``robustness.json``, ``table.json``, a heatmap PNG and an HTML page.

    ``conditions`` and ``folds`` are comma-separated (empty: all); ``pairs`` a pairs file (empty: the run
    config's LFW pairs, else at most ``max_pairs`` pairs of the data version's held-out identities)."""
    import shutil

    from faceops.kfp.components._io import folder, log_metrics

    from faceops.steps.context import step_inputs
    from faceops.steps.robustness import robustness_step

    out = folder(robustness)
    with step_inputs(data, store, run_config) as inputs:
        values = robustness_step(
            model.path,
            inputs.data_dir,
            run_config,
            out,
            [c.strip() for c in conditions.split(",") if c.strip()],
            pairs,
            [int(f) for f in folds.split(",") if f.strip()],
            seed,
            max_pairs,
        )
    log_metrics(metrics, values)
    shutil.copyfile(out / "report.html", report.path)
