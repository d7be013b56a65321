"""Component ``validate``: Great Expectations checks of the data version; fails the run when one fails."""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import HTML, Artifact, Metrics, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate(
    data: dict,
    md5: str,
    config: dict,
    report: Output[HTML],
    results: Output[Artifact],
    metrics: Output[Metrics],
):
    """Validate the data version ``data`` (fetched by reference from the DVC remote; ``md5`` names it);
    raises DataValidationFailed."""
    import shutil

    from faceops.kfp.components._io import folder, log_metrics

    from faceops.steps.context import checkout
    from faceops.steps.data import validate_step

    out = folder(results)
    try:
        values = validate_step(checkout(data), out, config)
    finally:  # the report of a failed validation is the most useful one
        if (out / "report.html").is_file():
            shutil.copyfile(out / "report.html", report.path)
    log_metrics(metrics, values)
    print(f"data version {md5}: {int(values['checks_passed'])} checks passed")
