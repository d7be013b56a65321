"""Kubernetes settings of every step (``kfp-kubernetes``): Secrets and ConfigMap as env, resources, retries.

The names below are the contract with the manifests in ``infra/k8s`` (a cluster user creates these objects in
the namespace the runs go to):

``faceops-s3`` (Secret, required)
    ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``: the S3 API (MinIO or AWS) holding the DVC remote, the
    cache store and, if ``FACEOPS_WEIGHTS`` is an ``s3://`` URI, the weights.
``faceops-endpoints`` (ConfigMap, required)
    ``AWS_ENDPOINT_URL`` (the S3 API; empty for AWS), ``MLFLOW_TRACKING_URI``, ``FACEOPS_STORE`` (the cache
    store, e.g. ``s3://faceops/cache``), ``FACEOPS_DVC_REMOTE`` (e.g. ``s3://faceops/dvc``),
    ``FACEOPS_DATA_REPO`` (the git URL of the data versions' repository). The steps read them when the
    matching pipeline parameter (``tracking_uri``, ``store``, ``remote``, ``repo``) is empty. The same
    ConfigMap holds ``KF_PIPELINES_ENDPOINT`` and ``KF_PIPELINES_NAMESPACE`` for the monitor; steps ignore them.
``faceops-mlflow`` (Secret, optional)
    ``MLFLOW_TRACKING_USERNAME``, ``MLFLOW_TRACKING_PASSWORD``: basic auth of the MLflow server, if it has any.

A missing required Secret or ConfigMap stops the pod before it starts (Kubernetes names the object); a missing
value inside one is reported by the step with the variable's name (:mod:`faceops.steps.context`).

Resources are requests (what the scheduler reserves), no limits: MTCNN and training use what they get.
Retries go to the steps whose failures are mostly the network's (S3, MLflow) and that are safe to repeat;
``register-and-gate`` is not retried (a retry after MLflow registered the version would register a second
one), nor ``validate`` (its failures are the data's) or ``record-status``. kfp.local honours retries too: local
runs are built without them (:func:`faceops.kfp.pipelines.run.run_local`), so a failure shows at once.
The preprocessing fan-out is the ``shards`` parameter: ``ParallelFor`` runs every shard at once (its
``parallelism`` takes only a number fixed at compile time, so it is left unbounded).

With ``cache_pvc`` (a compile-time option: a mount cannot be switched on or off by a run parameter), every step
mounts that PersistentVolumeClaim at :data:`CACHE_MOUNT` as its scratch cache (``FACEOPS_CACHE_DIR``), so
fetched data and weights survive from one step and one run to the next; the object store stays the truth.

kfp.local ignores all of this, except that it warns about resource requests and a non-literal image; the local
runner silences exactly those two warnings (:func:`faceops.kfp.pipelines.run.run_local`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CACHE_MOUNT",
    "ENDPOINTS_CONFIG_MAP",
    "ENDPOINT_KEYS",
    "MLFLOW_KEYS",
    "MLFLOW_SECRET",
    "RESOURCES",
    "RETRIES",
    "S3_KEYS",
    "S3_SECRET",
    "apply",
]

S3_SECRET = "faceops-s3"
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
ENDPOINTS_CONFIG_MAP = "faceops-endpoints"
ENDPOINT_KEYS = (
    "AWS_ENDPOINT_URL",
    "MLFLOW_TRACKING_URI",
    "FACEOPS_STORE",
    "FACEOPS_DVC_REMOTE",
    "FACEOPS_DATA_REPO",
)
MLFLOW_SECRET = "faceops-mlflow"
MLFLOW_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
CACHE_MOUNT = "/var/cache/faceops"

# step -> (CPU request, memory request)
RESOURCES: dict[str, tuple[str, str]] = {
    "record-status": ("100m", "256Mi"),
    "data-version": ("1", "2Gi"),
    "validate": ("1", "2Gi"),
    "plan-shards": ("100m", "256Mi"),
    "preprocess-shard": ("2", "4Gi"),
    "preprocess-merge": ("1", "3Gi"),
    "train": ("4", "8Gi"),
    "evaluate": ("2", "6Gi"),
    "register-and-gate": ("2", "6Gi"),
    "promote": ("100m", "512Mi"),
    "optimize": ("2", "6Gi"),
    "robustness": ("2", "6Gi"),
    # the train-detector pipeline
    "train-detector": ("4", "8Gi"),
    "evaluate-detector": ("2", "6Gi"),
    "register-detector": ("1", "2Gi"),
    "promote-detector": ("1", "4Gi"),
}
# step -> retries (backoff: 30 s, doubling)
RETRIES: dict[str, int] = {
    "data-version": 2,
    "preprocess-shard": 2,
    "preprocess-merge": 2,
    "train": 1,
    "evaluate": 2,
    "promote": 3,
    "optimize": 1,
    "robustness": 2,
    "train-detector": 1,
    "evaluate-detector": 2,
    # register-detector and promote-detector are not retried: a retry after MLflow registered a version would
    # register a second one
}


def apply(task: Any, image: Any, cache_pvc: str | None = None, retries: bool = True) -> None:
    """Give ``task`` (a ``PipelineTask``) the image ``image`` (a pipeline parameter), the Secrets and ConfigMap
    as env, its resource requests, its retries (unless ``retries`` is false) and the cache PVC when
    ``cache_pvc`` is set."""
    from kfp import kubernetes

    step = task.name
    if step not in RESOURCES:
        raise KeyError(f"no platform settings for step {step!r}: add it to RESOURCES in {__name__}")
    task.set_container_image(image)
    kubernetes.use_secret_as_env(task, S3_SECRET, {k: k for k in S3_KEYS})
    kubernetes.use_config_map_as_env(task, ENDPOINTS_CONFIG_MAP, {k: k for k in ENDPOINT_KEYS})
    kubernetes.use_secret_as_env(task, MLFLOW_SECRET, {k: k for k in MLFLOW_KEYS}, optional=True)
    cpu, memory = RESOURCES[step]
    task.set_cpu_request(cpu).set_memory_request(memory)
    if retries and RETRIES.get(step):
        task.set_retry(RETRIES[step], backoff_duration="30s", backoff_factor=2.0, backoff_max_duration="600s")
    if cache_pvc:
        kubernetes.mount_pvc(task, pvc_name=cache_pvc, mount_path=CACHE_MOUNT)
        task.set_env_variable("FACEOPS_CACHE_DIR", CACHE_MOUNT)
