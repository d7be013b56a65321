"""Components of the preprocessing fan-out: plan the shards, preprocess one shard, gather the shards.

``dsl.ParallelFor`` over :func:`plan_shards`'s list runs one :func:`preprocess_shard` per shard (on a cluster,
one pod each); the shards fill the crop cache that :func:`preprocess_merge` then reads whole.
"""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def plan_shards(data_dir: str, md5: str, shards: int) -> list[dict]:
    """One work item per shard: ``{shard, shards, data_dir, md5}`` (at least one shard).

    The data folder travels in the items because kfp.local (2.17) hands a loop body the loop item in place of
    outputs of tasks outside the loop; items work on a cluster and locally alike.
    """
    n = max(1, shards)
    return [{"shard": i, "shards": n, "data_dir": data_dir, "md5": md5} for i in range(n)]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def preprocess_shard(work: dict, run_config: dict, cache_dir: str) -> dict:
    """MTCNN + alignment of one shard (``work`` from :func:`plan_shards`) into the shared crop cache."""
    from faceops.kfp.components._io import cache_root, progress

    from faceops.steps.data import preprocess_shard as run_shard

    shard, shards = int(work["shard"]), int(work["shards"])
    counts = run_shard(
        work["data_dir"], run_config, shard, shards, cache_root(cache_dir), progress("preprocess-shard", "img")
    )
    print(f"data version {work['md5']}, shard {shard}/{shards}: {counts}")
    return counts


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def preprocess_merge(
    data_dir: str,
    md5: str,
    run_config: dict,
    cache_dir: str,
    shard_counts: list[dict],
    preprocessed: Output[Dataset],
    metrics: Output[Metrics],
):
    """Gather the shards: write ``stats.csv`` and ``preprocess.json`` of the whole data version."""
    from faceops.kfp.components._io import cache_root, folder, log_metrics

    from faceops.steps.data import preprocess_all

    values = preprocess_all(data_dir, run_config, folder(preprocessed), cache_root(cache_dir))
    values["shards"] = float(len(shard_counts))
    preprocessed.metadata.update({"md5": md5, **values})
    log_metrics(metrics, values)
