"""Component ``evaluate``: the trained bundle at its stored threshold, closed and open set, with plots."""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    data: dict,
    run_config: dict,
    store: str,
    model: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """Evaluate ``model`` on the data version: ``report.json``, ROC and confusion-matrix PNGs, HTML."""
    import shutil

    from faceops.kfp.components._io import folder, log_metrics

    from faceops.steps.context import step_inputs
    from faceops.steps.model import evaluate_step

    out = folder(evaluation)
    with step_inputs(data, store, run_config) as inputs:
        values = evaluate_step(model.path, inputs.data_dir, run_config, out, inputs.cache_dir)
    log_metrics(metrics, values)
    shutil.copyfile(out / "report.html", report.path)
