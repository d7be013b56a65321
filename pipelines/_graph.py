"""The step graph both pipelines share: called inside a ``@dsl.pipeline`` function with its parameters.

Steps hand each other values and KFP artifacts only: the data version by reference (``data-version``'s ``data``:
the DVC pointer and remote, from which each step fetches the files it needs), the model bundle, the evaluation.
Caches go through the object store named by the ``store`` parameter; MLflow is reached at ``tracking_uri``.
Every task gets the platform settings of :mod:`faceops.kfp.pipelines.platform` (image parameter, Secrets,
resources, retries, optional cache PVC).
"""

from __future__ import annotations

from typing import Any

from faceops.kfp.components.data_version import data_version
from faceops.kfp.components.evaluate import evaluate
from faceops.kfp.components.optimize import optimize
from faceops.kfp.components.preprocess import plan_shards, preprocess_merge, preprocess_shard
from faceops.kfp.components.register import promote, register_and_gate
from faceops.kfp.components.robustness import robustness
from faceops.kfp.components.status import record_status
from faceops.kfp.components.train import train
from faceops.kfp.components.validate import validate
from faceops.kfp.pipelines import platform
from kfp import dsl


def wire(name: str, p: dict[str, Any], cache_pvc: str | None = None, retries: bool = True) -> None:
    """Add the steps of pipeline ``name`` to the pipeline being defined; ``p`` holds its parameters
    (:func:`faceops.kfp.pipelines.platform.apply` for ``cache_pvc`` and ``retries``)."""
    tasks = []
    status = record_status(pipeline=name, reason=p["reason"], status_dir=p["status_dir"])
    status.set_caching_options(False).set_display_name("record-status")
    tasks.append(status)
    with dsl.ExitHandler(status, name="faceops-run"):
        data = data_version(
            repo=p["repo"],
            source=p["source"],
            version=p["data_version"],
            identities_file=p["identities_file"],
            min_images=p["min_images"],
            remote=p["remote"],
        )
        data.set_caching_options(False)  # it looks at the repository: never reuse an old answer
        # The data version travels as a value (pointer + remote): the same data gives the same inputs, so kfp's
        # cache reuses the steps after data-version; an artifact would be new on every run.
        ref, md5 = data.outputs["data"], data.outputs["md5"]
        checked = validate(data=ref, md5=md5, config=p["validation"])
        plan = plan_shards(data=ref, md5=md5, shards=p["shards"]).after(checked)
        tasks += [data, checked, plan]
        # Every shard at once: the ``shards`` parameter is the fan-out (ParallelFor's own limit is compile-time).
        with dsl.ParallelFor(plan.output, name="shards") as work:
            part = preprocess_shard(work=work, run_config=p["run_config"], store=p["store"])
            tasks.append(part)
        merged = preprocess_merge(
            data=ref,
            md5=md5,
            run_config=p["run_config"],
            store=p["store"],
            shard_counts=dsl.Collected(part.output),
        )
        trained = train(
            data=ref,
            run_config=p["run_config"],
            store=p["store"],
            workers=p["workers"],
            preprocessed=merged.outputs["preprocessed"],
        )
        evaluated = evaluate(data=ref, run_config=p["run_config"], store=p["store"], model=trained.outputs["model"])
        # the trained model under image conditions and per group (issue 16); its figures are for people to read
        # (MLflow, the report); the gate runs its own suite when GateConfig.robustness / .groups is set
        robust = robustness(
            data=ref,
            run_config=p["run_config"],
            store=p["store"],
            model=trained.outputs["model"],
            conditions=p.get("robustness_conditions", ""),
            max_pairs=p.get("robustness_max_pairs", 200),
        )
        tasks.append(robust)
        gate = register_and_gate(
            data=ref,
            run_config=p["run_config"],
            max_accuracy_drop=p["max_accuracy_drop"],
            max_far_increase=p["max_far_increase"],
            min_tar_at_far=p["min_tar_at_far"],
            trigger=p["reason"],
            tracking_uri=p["tracking_uri"],
            store=p["store"],
            data_info=data.outputs["info"],
            model=trained.outputs["model"],
            evaluation=evaluated.outputs["evaluation"],
        )
        tasks += [merged, trained, evaluated, gate]
        # The decision is the step's one parameter output ("Output"): kfp.local 2.17 resolves conditions on
        # such outputs only, not on named outputs of a NamedTuple.
        with dsl.If(gate.outputs["Output"] == "promote", name="gate-passed"):
            promoted = promote(registered=gate.outputs["registered"], tracking_uri=p["tracking_uri"])
            tasks.append(promoted)
            if "optimize_method" in p:  # a faster variant of the new champion, through the parity gate
                faster = optimize(
                    data=ref,
                    run_config=p["run_config"],
                    store=p["store"],
                    method=p["optimize_method"],
                    lfw_pairs=p["optimize_lfw_pairs"],
                    lfw_folds=p["optimize_lfw_folds"],
                    pairs_per_fold=p["optimize_pairs_per_fold"],
                    promote=p["optimize_promote"],
                    sparsity=p["optimize_sparsity"],
                    epochs=p["optimize_epochs"],
                    tracking_uri=p["tracking_uri"],
                ).after(promoted)
                tasks.append(faster)
    for task in tasks:
        platform.apply(task, p["image"], cache_pvc, retries)
