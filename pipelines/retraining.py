"""The ``faceops-retraining`` pipeline: the training steps on a given data version, started with a reason."""
# No "from __future__ import annotations": kfp reads the parameter types from real annotations.

from typing import Any

from faceops.kfp.components.image import IMAGE

NAME = "faceops-retraining"


def make_pipeline(image: str = IMAGE, cache_pvc: str | None = None, retries: bool = True) -> Any:
    """The pipeline function; ``image`` is the default of its ``image`` parameter (the components' image),
    ``cache_pvc`` a PersistentVolumeClaim every step mounts as its scratch cache (none by default), ``retries``
    whether network steps are retried (off for kfp.local)."""
    from faceops.kfp.pipelines._graph import wire
    from kfp import dsl

    from faceops.training.config import GateConfig

    gate = GateConfig()  # the gate's tolerances default to the run config's defaults

    @dsl.pipeline(
        name=NAME,
        description="Retrain a FaceOps model on a data version (e.g. after drift); the "
        "promotion gate decides whether it replaces the champion.",
    )
    def faceops_retraining(
        reason: str = "manual",
        data_version: str = "",
        repo: str = "",
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
        optimize_method: str = "",
        optimize_lfw_pairs: str = "",
        optimize_lfw_folds: list = [1, 2, 3, 4, 5, 6, 7, 8],  # noqa: B006
        optimize_pairs_per_fold: int = 0,
        optimize_promote: bool = True,
        optimize_sparsity: float = 0.25,
        optimize_epochs: int = 3,
        image: str = image,
    ) -> None:
        """Parameters: why it runs, the data version (a git revision of data.dvc in ``repo``, a folder or a
        git URL; empty: the current one), the run config (from the monitor it carries ``drift``, what drifted
        and how, which training turns into its augmentation and preprocessing, and ``gate.robustness`` on the
        drifted conditions: :mod:`faceops.training.drift_plan`), validation thresholds, ``shards`` (preprocessing
        pods, all at once) and DDP ``workers``, the gate's tolerances, and where things are: ``remote``
        (empty: $FACEOPS_DVC_REMOTE), ``store`` (empty: $FACEOPS_STORE), ``tracking_uri`` (empty:
        $MLFLOW_TRACKING_URI), ``image``. ``robustness_conditions`` (comma-separated, empty: all) and ``robustness_max_pairs``: the
        robustness step on the data version's held-out identities. ``optimize_*`` as in the training pipeline, but off by default
        (``optimize_method`` empty): a model retrained for drift stays champion as it is, since the parity gate
        scores a faster variant on clean LFW pairs and the data version, not on the drifted condition."""
        wire(NAME, {**locals(), "source": "", "identities_file": "", "min_images": 1}, cache_pvc, retries)

    return faceops_retraining
