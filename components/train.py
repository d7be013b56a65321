"""Component ``train``: transfer learning of InceptionResnetV1 on the preprocessed data version."""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    data_dir: str,
    run_config: dict,
    cache_dir: str,
    workers: int,
    preprocessed: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """Fine-tune (``workers`` > 1: torch DDP over that many processes); the model is a bundle folder."""
    import shutil

    from faceops.kfp.components._io import cache_root, folder, log_metrics, progress

    from faceops.steps.model import train_step

    out = folder(model)
    values = train_step(data_dir, run_config, out, cache_root(cache_dir), workers, progress("train", "epoch"))
    model.metadata.update(
        {"framework": "pytorch", "format": "faceops-bundle", "preprocessed": preprocessed.uri}
    )
    log_metrics(metrics, values)
    shutil.copyfile(out / "report.html", report.path)
