"""The ``faceops-training`` pipeline: from a data version (or a source to import) to a promoted champion."""
# No "from __future__ import annotations": kfp reads the parameter types from real annotations.

from typing import Any

from faceops.kfp.components.image import IMAGE

NAME = "faceops-training"


def make_pipeline(image: str = IMAGE) -> Any:
    """The pipeline function, its components running in ``image``."""
    from faceops.kfp.pipelines._graph import wire
    from kfp import dsl

    from faceops.training.config import GateConfig

    gate = GateConfig()  # the gate's tolerances default to the run config's defaults

    # KFP reads parameter defaults from the signature; the dict defaults are never mutated.
    @dsl.pipeline(
        name=NAME,
        description="Validate, preprocess, train, evaluate and register a FaceOps model; "
        "the promotion gate decides whether it becomes the champion.",
    )
    def faceops_training(
        repo: str = ".",
        source: str = "",
        data_version: str = "",
        identities_file: str = "",
        min_images: int = 1,
        remote: str = "local",
        run_config: dict = {},  # noqa: B006
        validation: dict = {},  # noqa: B006
        shards: int = 2,
        workers: int = 1,
        max_accuracy_drop: float = gate.max_accuracy_drop,
        max_far_increase: float = gate.max_far_increase,
        min_tar_at_far: float = gate.min_tar_at_far,
        tracking_uri: str = "",
        cache_dir: str = "",
        status_dir: str = "",
        reason: str = "training",
    ) -> None:
        """Parameters: the data repository and version (or a folder to import), the run config (TrainConfig
        fields), validation thresholds, shards and DDP workers, the gate's tolerances and where things are."""
        wire(NAME, image, dict(locals()))

    return faceops_training
