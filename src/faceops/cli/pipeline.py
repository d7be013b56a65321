"""``faceops pipeline``: compile the Kubeflow pipelines, run one locally (kfp.local) or submit it.

kfp and the ``pipelines`` package are imported inside the commands only: the rest of the CLI works without.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from faceops.cli._common import echo_json, json_option

__all__ = ["pipeline"]

_yaml_file = click.Path(exists=True, dir_okay=False, path_type=Path)


def _run_options(func: Any) -> Any:
    """The pipeline parameters shared by ``run`` and ``submit``."""
    options = [
        click.option(
            "--pipeline",
            "name",
            type=click.Choice(["training", "retraining"]),
            default="training",
            show_default=True,
            help="Which pipeline.",
        ),
        click.option(
            "--source",
            type=click.Path(file_okay=False, path_type=Path),
            help="Import this folder-per-identity tree as a new data version first (training only).",
        ),
        click.option(
            "--identities",
            "identities_file",
            type=_yaml_file,
            help="With --source: only the identities listed (LFW's people_min10.txt works).",
        ),
        click.option(
            "--min-images",
            type=click.IntRange(1, None),
            help="With --source: leave out identities with fewer usable images.",
        ),
        click.option(
            "--data-version", help="A git revision of data.dvc to train on (default: the current one)."
        ),
        click.option("--reason", help="Why the run starts (retraining: required; recorded on the model)."),
        click.option(
            "--config",
            "config_path",
            type=_yaml_file,
            help="Run config (YAML, TrainConfig fields: configs/train.yaml).",
        ),
        click.option(
            "--validation",
            "validation_path",
            type=_yaml_file,
            help="Validation thresholds (YAML, ValidationConfig fields).",
        ),
        click.option("--shards", type=click.IntRange(1, 256), help="Preprocessing shards (ParallelFor)."),
        click.option("--workers", type=click.IntRange(1, 64), help="Data-parallel training processes (DDP)."),
        click.option(
            "--max-accuracy-drop", type=click.FloatRange(0, 1), help="Gate: tolerated accuracy drop."
        ),
        click.option("--max-far-increase", type=click.FloatRange(0, 1), help="Gate: tolerated FAR increase."),
        click.option(
            "--min-tar-at-far", type=click.FloatRange(0, 1), help="Gate: floor on TAR at the target FAR."
        ),
        click.option(
            "--repo",
            type=click.Path(file_okay=False, path_type=Path),
            help="The git + DVC repository holding data/ (local runs: default '.').",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _collect(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Pipeline arguments from the options that were given (paths made absolute, YAML files read)."""
    from faceops.data.validation import ValidationConfig
    from faceops.face.config import load_yaml_config
    from faceops.training.config import TrainConfig

    if name == "retraining":
        if options.get("source") or options.get("identities_file") or options.get("min_images"):
            raise click.UsageError("the retraining pipeline takes --data-version, not --source")
        if not options.get("reason"):
            raise click.UsageError("the retraining pipeline needs --reason")
    config, validation = options.pop("config_path"), options.pop("validation_path")
    out = {k: str(v.resolve()) if isinstance(v, Path) else v for k, v in options.items() if v is not None}
    if config is not None:
        # data_root / output_dir / mlflow are the pipeline's own business
        loaded = load_yaml_config(config, TrainConfig)
        out["run_config"] = loaded.model_dump(mode="json", exclude={"data_root", "output_dir", "mlflow"})
        for key in ("max_accuracy_drop", "max_far_increase", "min_tar_at_far"):  # options win over the file
            out.setdefault(key, getattr(loaded.gate, key))
    if validation is not None:
        out["validation"] = load_yaml_config(validation, ValidationConfig).model_dump(mode="json")
    return out


@click.group()
def pipeline() -> None:
    """Kubeflow pipelines: compile for the Kubeflow UI, run locally (kfp.local), submit to a cluster."""


@pipeline.command(name="compile")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("outputs/pipelines"),
    show_default=True,
    help="Folder for <pipeline>.yaml.",
)
@click.option("--image", help="Container image of the components (default: faceops.kfp.components.image.IMAGE).")
def compile_(out: Path, image: str | None) -> None:
    """Write the pipeline YAML files that the Kubeflow UI uploads."""
    from faceops.kfp.pipelines.run import compile_pipelines

    for name, path in compile_pipelines(out, image=image).items():
        click.echo(f"{name}: {path}")


@pipeline.command()
@click.option("--local", is_flag=True, help="Run on this machine with kfp.local (SubprocessRunner).")
@_run_options
@click.option("--no-cache", is_flag=True, help="Run every step, reusing nothing from earlier runs.")
@click.option(
    "--pipeline-root",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where step outputs go (default: <output_dir>/pipeline/runs).",
)
@click.option(
    "--verbose", is_flag=True, help="Show everything kfp and the steps print (it always goes to the log file)."
)
@json_option
def run(
    local: bool,
    name: str,
    repo: Path | None,
    no_cache: bool,
    pipeline_root: Path | None,
    verbose: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Run a whole pipeline and wait for it: one line per step as it ends, progress bars, then what happened
    and where to look; the full output of kfp and the steps goes to a log file."""
    if not local:
        raise click.UsageError("give --local (kfp.local on this machine), or use 'faceops pipeline submit'")
    import sys

    from faceops.kfp.pipelines.run import local_arguments, run_local
    from faceops.kfp.pipelines.summary import render, summarize

    arguments = local_arguments(repo or Path("."), **_collect(name, options))
    result = run_local(
        name,
        arguments,
        pipeline_root=pipeline_root,
        caching=not no_cache,
        console=sys.stderr if as_json else sys.stdout,  # --json: stdout holds the JSON alone
        verbose=verbose,
    )
    summary = summarize(result, arguments)
    if as_json:
        echo_json(summary)
    else:
        click.echo(render(summary))


@pipeline.command()
@click.option("--host", required=True, help="Kubeflow Pipelines API, e.g. http://127.0.0.1:8080.")
@click.option("--image", help="Container image of the components (default: faceops.kfp.components.image.IMAGE).")
@click.option("--experiment", default="faceops", show_default=True, help="Kubeflow experiment.")
@click.option("--tracking-uri", help="MLflow tracking URI the steps log to (as the cluster sees it).")
@_run_options
@json_option
def submit(
    host: str,
    image: str | None,
    experiment: str,
    tracking_uri: str | None,
    name: str,
    repo: Path | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Upload a pipeline to a Kubeflow Pipelines cluster and start a run (returns at once)."""
    from faceops.kfp.pipelines.run import submit as submit_run

    arguments = _collect(name, options)
    if repo is not None:
        arguments["repo"] = str(
            repo
        )  # a path inside the step containers (the shared volume), not resolved here
    if tracking_uri:
        arguments["tracking_uri"] = tracking_uri
    result = submit_run(name, arguments, host, image=image, experiment=experiment)
    if as_json:
        echo_json(result)
    else:
        click.echo(f"submitted {result['pipeline']} to {host}: run {result['run_id']}")
