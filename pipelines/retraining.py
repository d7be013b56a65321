"""The ``faceops-retraining`` pipeline: the training steps on a given data version, started with a reason."""
# No "from __future__ import annotations": kfp reads the parameter types from real annotations.

from typing import Any

from components.image import IMAGE

NAME = "faceops-retraining"


def make_pipeline(image: str = IMAGE) -> Any:
    """The pipeline function, its components running in ``image``."""
    from kfp import dsl

    from pipelines._graph import wire

    @dsl.pipeline(
        name=NAME,
        description="Retrain a FaceOps model on a data version (e.g. after drift); the "
        "promotion gate decides whether it replaces the champion.",
    )
    def faceops_retraining(
        reason: str = "manual",
        data_version: str = "",
        repo: str = ".",
        remote: str = "local",
        run_config: dict = {},  # noqa: B006
        validation: dict = {},  # noqa: B006
        shards: int = 2,
        workers: int = 1,
        max_accuracy_drop: float = 0.0,
        max_far_increase: float = 0.0005,
        min_tar_at_far: float = 0.0,
        tracking_uri: str = "",
        cache_dir: str = "",
        status_dir: str = "",
    ) -> None:
        """Parameters: why it runs, the data version (a git revision of data.dvc; empty: the current
        one), the run config, validation thresholds, shards and DDP workers, the gate's tolerances, paths."""
        wire(NAME, image, {**locals(), "source": "", "identities_file": "", "min_images": 1})

    return faceops_retraining
