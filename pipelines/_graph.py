"""The step graph both pipelines share: called inside a ``@dsl.pipeline`` function with its parameters."""

from __future__ import annotations

from typing import Any

from faceops.kfp.components.data_version import data_version
from faceops.kfp.components.evaluate import evaluate
from faceops.kfp.components.image import IMAGE
from faceops.kfp.components.preprocess import plan_shards, preprocess_merge, preprocess_shard
from faceops.kfp.components.register import promote, register_and_gate
from faceops.kfp.components.status import record_status
from faceops.kfp.components.train import train
from faceops.kfp.components.validate import validate
from kfp import dsl

# Shards preprocessed at once: a cluster runs one pod per shard; locally, each is a process on this machine.
PARALLELISM = 2


def wire(name: str, image: str, p: dict[str, Any]) -> None:
    """Add the steps of pipeline ``name`` to the pipeline being defined; ``p`` holds its parameters."""
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
        data_dir, md5 = data.outputs["data_dir"], data.outputs["md5"]
        checked = validate(data_dir=data_dir, md5=md5, config=p["validation"])
        plan = plan_shards(data_dir=data_dir, md5=md5, shards=p["shards"]).after(checked)
        tasks += [data, checked, plan]
        with dsl.ParallelFor(plan.output, parallelism=PARALLELISM, name="shards") as work:
            part = preprocess_shard(work=work, run_config=p["run_config"], cache_dir=p["cache_dir"])
            tasks.append(part)
        merged = preprocess_merge(
            data_dir=data_dir,
            md5=md5,
            run_config=p["run_config"],
            cache_dir=p["cache_dir"],
            shard_counts=dsl.Collected(part.output),
        )
        trained = train(
            data_dir=data_dir,
            run_config=p["run_config"],
            cache_dir=p["cache_dir"],
            workers=p["workers"],
            preprocessed=merged.outputs["preprocessed"],
        )
        evaluated = evaluate(
            data_dir=data_dir,
            run_config=p["run_config"],
            cache_dir=p["cache_dir"],
            model=trained.outputs["model"],
        )
        gate = register_and_gate(
            data_dir=data_dir,
            run_config=p["run_config"],
            max_accuracy_drop=p["max_accuracy_drop"],
            max_far_increase=p["max_far_increase"],
            min_tar_at_far=p["min_tar_at_far"],
            trigger=p["reason"],
            tracking_uri=p["tracking_uri"],
            cache_dir=p["cache_dir"],
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
    if image != IMAGE:
        for task in tasks:
            task.set_container_image(image)
