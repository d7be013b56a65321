"""Kubeflow Pipelines components of FaceOps: one small file per step, each calling one ``faceops`` function.

Every component runs in the FaceOps image (``faceops.kfp.components.image.IMAGE``, built from ``infra/Dockerfile``) where
the package is installed, so ``install_kfp_package=False``: locally, ``kfp.local``'s SubprocessRunner runs
them with this virtual environment's Python. Steps share nothing but KFP artifacts, the DVC remote, the
cache store and MLflow (:mod:`faceops.steps.context`): on a cluster each is a pod with an empty file system, its
settings from the Secrets and ConfigMap of :mod:`faceops.kfp.pipelines.platform`.

Modules (each defines the component of the same name): ``data_version``, ``validate``, ``preprocess``
(``plan_shards``, ``preprocess_shard``, ``preprocess_merge``), ``train``, ``evaluate``, ``robustness``, ``register``
(``register_and_gate``, ``promote``), ``optimize`` (a faster variant through the parity gate), ``status``
(``record_status``, the exit handler); ``image`` (``IMAGE``).

This package imports nothing itself: component bodies import ``faceops.kfp.components._io`` at run time inside kfp's
executor, where defining the components as a side effect of importing the package would fail.
"""
