"""Component ``record-status``: the exit handler that records how a run ended, whatever happened."""

from faceops.kfp.components.image import IMAGE
from kfp import dsl
from kfp.dsl import PipelineTaskFinalStatus


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def record_status(pipeline: str, reason: str, status_dir: str, status: PipelineTaskFinalStatus):
    """Append the run's final state (and the failed task, if any) to ``<status_dir>/status.jsonl``."""
    from faceops.steps.model import record_status as run

    final = {
        "state": status.state,
        "pipeline_task_name": status.pipeline_task_name,
        "pipeline_job_resource_name": status.pipeline_job_resource_name,
        "error": {"message": status.error_message} if status.error_message else {},
    }
    path = run(pipeline, final, status_dir or ".", {"reason": reason})
    print(f"{pipeline}: {status.state} (recorded in {path})")
