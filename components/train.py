"""Component ``train``: transfer learning of InceptionResnetV1 on the preprocessed data version."""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    data: dict,
    run_config: dict,
    store: str,
    workers: int,
    preprocessed: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """Fine-tune (``workers`` > 1: torch DDP over that many processes); the model is a bundle folder."""
    import shutil

    from faceops.kfp.components._io import folder, log_metrics, progress

    from faceops.steps.context import step_inputs
    from faceops.steps.model import train_step

    out = folder(model)
    with step_inputs(data, store, run_config) as inputs:
        values = train_step(inputs.data_dir, run_config, out, inputs.cache_dir, workers, progress("train", "epoch"))
    model.metadata.update({"framework": "pytorch", "format": "faceops-bundle", "preprocessed": preprocessed.uri})
    log_metrics(metrics, values)
    shutil.copyfile(out / "report.html", report.path)
