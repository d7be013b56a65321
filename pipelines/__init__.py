"""Kubeflow pipelines of FaceOps: wiring only (the steps are ``components/``, the logic is ``faceops``).

``training``
    data version -> validate -> preprocess (ParallelFor over shards) -> train -> evaluate -> register-and-gate
    -> promote (only under ``dsl.If`` when the gate passes), inside an exit handler that records the final
    status.
``retraining``
    the same steps, started with a reason and a data version (by monitoring or by hand).
``train-detector``
    train-detector -> evaluate-detector -> register-detector -> promote-detector (only under ``dsl.If`` when the
    detector gate admits it), inside an exit handler that records the final status.

Importing this package imports no kfp: :data:`PIPELINES` names factories that build the pipelines on demand,
and :mod:`faceops.kfp.pipelines.run` compiles, runs (``kfp.local``) and submits (``kfp.Client``) them.
"""

from __future__ import annotations

__all__ = ["PIPELINES"]

# name -> "module:factory"; each factory takes the component image and returns the @dsl.pipeline function.
PIPELINES = {
    "training": "faceops.kfp.pipelines.training:make_pipeline",
    "retraining": "faceops.kfp.pipelines.retraining:make_pipeline",
    "train-detector": "faceops.kfp.pipelines.train_detector:make_pipeline",
}
