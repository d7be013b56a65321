"""The ``faceops-train-detector`` pipeline: train FaceOps' own detector, gate it against the champion detector and,
when admitted, make it the detector of the embedder champion."""
# No "from __future__ import annotations": kfp reads the parameter types from real annotations.

from typing import Any

from faceops.kfp.components.image import IMAGE

NAME = "faceops-train-detector"


def make_pipeline(image: str = IMAGE, cache_pvc: str | None = None, retries: bool = True) -> Any:
    """The pipeline function; ``image`` is the default of its ``image`` parameter (the components' image),
    ``cache_pvc`` a PersistentVolumeClaim every step mounts as its scratch cache (none by default), ``retries``
    whether network steps are retried (off for kfp.local)."""
    from faceops.kfp.components.status import record_status
    from faceops.kfp.components.train_detector import (
        evaluate_detector,
        promote_detector,
        register_detector,
        train_detector,
    )
    from faceops.kfp.pipelines import platform
    from kfp import dsl

    from faceops.detector.gate import DETECTOR_MODEL_NAME, DetectorGateConfig

    gate = DetectorGateConfig()  # the tolerances default to the gate config's

    @dsl.pipeline(
        name=NAME,
        description="Pseudo-label and train FaceOps' own face detector, measure it against the champion detector "
        "(LFW verification through the embedder champion, multi-face recall), register and gate it; when "
        "admitted, it becomes the champion detector and the detector of a new embedder champion.",
    )
    def faceops_train_detector(
        lfw_root: str = "",
        photos: int = 400,
        train: dict = {},  # noqa: B006
        net: dict = {},  # noqa: B006
        lfw_folds: list = [1, 2, 3, 4, 5, 6, 7, 8],  # noqa: B006
        pairs_per_fold: int = 0,
        multiface_csv: str = "",
        max_accuracy_drop: float = gate.max_accuracy_drop,
        max_recall_drop: float = gate.max_recall_drop,
        detector_model: str = DETECTOR_MODEL_NAME,
        tracking_uri: str = "",
        status_dir: str = "",
        reason: str = "train-detector",
        image: str = image,
    ) -> None:
        """Parameters: the data (``lfw_root``, empty: the shared datasets' LFW; ``photos`` pseudo-labelled training
        photos), ``train`` (DetectorTrainConfig fields: size, width, epochs, steps, time budget), ``net`` (how the
        detector's output is decoded: threshold, nms_iou, max_sides), the evaluation (``lfw_folds``,
        ``pairs_per_fold`` 0: all; ``multiface_csv`` empty: the shared multi-face photos), the gate's tolerances
        (fractions: 0.002 is 0.2 points), the registered detector model's name, ``tracking_uri`` (empty:
        $MLFLOW_TRACKING_URI) and ``image``."""
        status = record_status(pipeline=NAME, reason=reason, status_dir=status_dir)
        status.set_caching_options(False).set_display_name("record-status")
        tasks = [status]
        with dsl.ExitHandler(status, name="faceops-train-detector-run"):
            trained = train_detector(lfw_root=lfw_root, photos=photos, train=train)
            evaluated = evaluate_detector(
                detector=trained.outputs["detector"],
                net=net,
                lfw_root=lfw_root,
                lfw_folds=lfw_folds,
                pairs_per_fold=pairs_per_fold,
                multiface_csv=multiface_csv,
                detector_model=detector_model,
                tracking_uri=tracking_uri,
            )
            # it compares with whatever is champion now: never reuse an old answer
            evaluated.set_caching_options(False)
            gated = register_detector(
                detector=trained.outputs["detector"],
                evaluation=evaluated.outputs["evaluation"],
                max_accuracy_drop=max_accuracy_drop,
                max_recall_drop=max_recall_drop,
                detector_model=detector_model,
                reason=reason,
                tracking_uri=tracking_uri,
            )
            gated.set_caching_options(False)
            tasks += [trained, evaluated, gated]
            with dsl.If(gated.outputs["Output"] == "promote", name="detector-admitted"):
                promoted = promote_detector(
                    detector=trained.outputs["detector"],
                    registered=gated.outputs["registered"],
                    tracking_uri=tracking_uri,
                )
                promoted.set_caching_options(False)
                tasks.append(promoted)
        for task in tasks:
            platform.apply(task, image, cache_pvc, retries)

    return faceops_train_detector
