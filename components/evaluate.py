"""Component ``evaluate``: the trained bundle at its stored threshold, closed and open set, with plots."""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    data_dir: str,
    run_config: dict,
    cache_dir: str,
    model: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """Evaluate ``model`` on the data version: ``report.json``, ROC and confusion-matrix PNGs, HTML."""
    import shutil

    from faceops.kfp.components._io import cache_root, folder, log_metrics

    from faceops.steps.model import evaluate_step

    out = folder(evaluation)
    values = evaluate_step(model.path, data_dir, run_config, out, cache_root(cache_dir))
    log_metrics(metrics, values)
    shutil.copyfile(out / "report.html", report.path)
