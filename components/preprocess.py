"""Components of the preprocessing fan-out: plan the shards, preprocess one shard, gather the shards.

``dsl.ParallelFor`` over :func:`plan_shards`'s list runs one :func:`preprocess_shard` per shard (on a cluster,
one pod each); each shard fetches its own images from the DVC remote and adds its crops to the cache store
(``store``), which :func:`preprocess_merge` then reads whole.
"""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def plan_shards(data: dict, md5: str, shards: int) -> list[dict]:
    """One work item per shard: ``{shard, shards, md5, data}`` (at least one shard), ``data`` being the data
    version by reference (pointer and DVC remote).

    The reference travels in the items because kfp.local (2.17) hands a loop body the loop item in place of
    outputs of tasks outside the loop; items work on a cluster and locally alike.
    """
    n = max(1, shards)
    return [{"shard": i, "shards": n, "md5": md5, "data": data} for i in range(n)]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def preprocess_shard(work: dict, run_config: dict, store: str) -> dict:
    """MTCNN + alignment of one shard (``work`` from :func:`plan_shards`) into the cache store."""
    from faceops.kfp.components._io import progress

    from faceops.steps.context import step_inputs
    from faceops.steps.data import preprocess_shard as run_shard

    shard, shards = int(work["shard"]), int(work["shards"])
    with step_inputs(work["data"], store, run_config, shard=(shard, shards), trunk=False) as inputs:
        counts = run_shard(inputs.data_dir, run_config, shard, shards, inputs.cache_dir, progress("preprocess-shard", "img"))
    print(f"data version {work['md5']}, shard {shard}/{shards}: {counts}")
    return counts


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def preprocess_merge(
    data: dict,
    md5: str,
    run_config: dict,
    store: str,
    shard_counts: list[dict],
    preprocessed: Output[Dataset],
    metrics: Output[Metrics],
):
    """Gather the shards: write ``stats.csv`` and ``preprocess.json`` of the whole data version."""
    from faceops.kfp.components._io import folder, log_metrics

    from faceops.steps.context import step_inputs
    from faceops.steps.data import preprocess_all

    with step_inputs(data, store, run_config, trunk=False) as inputs:
        values = preprocess_all(inputs.data_dir, run_config, folder(preprocessed), inputs.cache_dir)
    values["shards"] = float(len(shard_counts))
    preprocessed.metadata.update({"md5": md5, **values})
    log_metrics(metrics, values)
