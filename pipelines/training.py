"""The ``faceops-training`` pipeline: from a data version (or a source to import) to a promoted champion."""
# No "from __future__ import annotations": kfp reads the parameter types from real annotations.

from typing import Any

from faceops.kfp.components.image import IMAGE

NAME = "faceops-training"


def make_pipeline(image: str = IMAGE, cache_pvc: str | None = None, retries: bool = True) -> Any:
    """The pipeline function; ``image`` is the default of its ``image`` parameter (the components' image),
    ``cache_pvc`` a PersistentVolumeClaim every step mounts as its scratch cache (none by default), ``retries``
    whether network steps are retried (off for kfp.local)."""
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
        repo: str = "",
        source: str = "",
        data_version: str = "",
        identities_file: str = "",
        min_images: int = 1,
        remote: str = "",
        run_config: dict = {},  # noqa: B006
        validation: dict = {},  # noqa: B006
        shards: int = 2,
        workers: int = 1,
        max_accuracy_drop: float = gate.max_accuracy_drop,
        max_far_increase: float = gate.max_far_increase,
        min_tar_at_far: float = gate.min_tar_at_far,
        tracking_uri: str = "",
        store: str = "",
        status_dir: str = "",
        robustness_conditions: str = "underexposure,gaussian_blur,jpeg,downscale",
        robustness_max_pairs: int = 200,
        optimize_method: str = "mobilefacenet",
        optimize_lfw_pairs: str = "",
        optimize_lfw_folds: list = [1, 2, 3, 4, 5, 6, 7, 8],  # noqa: B006
        optimize_pairs_per_fold: int = 0,
        optimize_promote: bool = True,
        optimize_sparsity: float = 0.25,
        optimize_epochs: int = 3,
        image: str = image,
        reason: str = "training",
    ) -> None:
        """Parameters: the data (``repo``: a git + DVC repository folder, a git URL to clone, or empty for a
        fresh one; ``data_version`` in it, or a ``source`` folder to import), the run config (TrainConfig
        fields), validation thresholds, ``shards`` (preprocessing pods, all at once) and DDP ``workers``, the
        gate's tolerances, and where things are: ``remote`` (DVC remote name or URL; empty:
        $FACEOPS_DVC_REMOTE), ``store`` (cache store URI; empty: $FACEOPS_STORE), ``tracking_uri`` (empty:
        $MLFLOW_TRACKING_URI), ``image`` (the components' image). ``robustness_conditions`` (comma-separated,
        empty: all) and ``robustness_max_pairs``: the robustness step on the data version's held-out identities.
        After a promotion, ``optimize_method``
        (``mobilefacenet`` by default, ``onnx``, ``int8``, ``bf16``, ``prune`` with ``optimize_sparsity`` of the channels
        removed and ``optimize_epochs`` of distillation; empty: skip) builds a faster variant of the new champion
        that replaces it (``optimize_promote``) only if the parity gate admits it on LFW pairs ``optimize_lfw_folds``
        (``optimize_lfw_pairs`` empty: the shared datasets' copy; ``optimize_pairs_per_fold`` 0: all) and the data."""
        wire(NAME, dict(locals()), cache_pvc, retries)

    return faceops_training
