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
            type=click.Choice(["training", "retraining", "train-detector"]),
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
            "--detector-config",
            "detector_path",
            type=_yaml_file,
            help="train-detector only: its parameters as YAML (photos, train, net, lfw_folds, pairs_per_fold, "
            "max_accuracy_drop, max_recall_drop, detector_model, ...).",
        ),
        click.option(
            "--repo",
            help="The git + DVC repository of the data versions: a folder (local runs: default '.'), or on a "
            "cluster its git URL (default: FACEOPS_DATA_REPO in the step pods).",
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

    detector = options.pop("detector_path", None)
    if name == "train-detector":
        return _collect_detector(options, detector)
    if detector is not None:
        raise click.UsageError("--detector-config is for the train-detector pipeline")
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


# the options of the embedder pipelines; train-detector takes its parameters from --detector-config
_TRAINING_ONLY = (
    "source", "identities_file", "min_images", "data_version", "config_path", "validation_path", "shards", "workers",
    "max_accuracy_drop", "max_far_increase", "min_tar_at_far",
)


def _collect_detector(options: dict[str, Any], path: Path | None) -> dict[str, Any]:
    """The train-detector pipeline's arguments: ``--reason`` and the YAML of ``--detector-config``."""
    import yaml

    given = sorted(k for k in _TRAINING_ONLY if options.get(k) is not None)
    if given:
        raise click.UsageError(
            f"the train-detector pipeline does not take {', '.join('--' + k.replace('_', '-') for k in given)}: "
            "give its parameters with --detector-config"
        )
    out: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise click.UsageError(f"{path}: expected a mapping of train-detector parameters")
        out.update(loaded)
    if options.get("reason"):
        out["reason"] = options["reason"]
    return out


def _for_pipeline(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The local defaults the pipeline takes (train-detector has no data repository, remote or cache store)."""
    if name != "train-detector":
        return arguments
    return {k: v for k, v in arguments.items() if k not in ("repo", "remote", "store")}


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
@click.option(
    "--cache-pvc",
    help="A ReadWriteMany PersistentVolumeClaim every step mounts as its scratch cache (fetched data, weights).",
)
def compile_(out: Path, image: str | None, cache_pvc: str | None) -> None:
    """Write the pipeline YAML files that the Kubeflow UI uploads."""
    from faceops.kfp.pipelines.run import compile_pipelines

    for name, path in compile_pipelines(out, image=image, cache_pvc=cache_pvc).items():
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
    repo: str | None,
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

    arguments = _for_pipeline(name, local_arguments(Path(repo or "."), **_collect(name, options)))
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


def _kfp_options(func: Any) -> Any:
    """Where the Kubeflow Pipelines API is and who calls it (``submit`` and ``schedule``)."""
    options = [
        click.option(
            "--host",
            envvar="KF_PIPELINES_ENDPOINT",
            help="Kubeflow Pipelines API, e.g. http://ml-pipeline.kubeflow:8888 or a port-forward "
            "(default: KF_PIPELINES_ENDPOINT).",
        ),
        click.option(
            "--namespace",
            help="Kubeflow profile namespace of a multi-user install (default: KF_PIPELINES_NAMESPACE; none: "
            "single-user).",
        ),
        click.option(
            "--token-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="File holding the bearer token, e.g. a projected service-account token (default: "
            "FACEOPS_KFP_TOKEN holds the token itself, else KF_PIPELINES_SA_TOKEN_PATH).",
        ),
        click.option("--no-auth", is_flag=True, help="Send no credentials (a server without authentication)."),
        click.option("--image", help="Container image of the components (default: faceops.kfp.components.image.IMAGE)."),
        click.option(
            "--experiment",
            help="Kubeflow experiment (default: KF_PIPELINES_DEFAULT_EXPERIMENT_NAME, else 'faceops').",
        ),
        click.option("--service-account", help="Kubernetes service account of the run's pods."),
        click.option("--cache-pvc", help="PersistentVolumeClaim the steps mount as their scratch cache (optional)."),
        click.option("--tracking-uri", help="MLflow tracking URI the steps log to (as the cluster sees it)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _cluster_arguments(name: str, repo: str | None, tracking_uri: str | None, options: dict[str, Any]) -> dict[str, Any]:
    arguments = _collect(name, options)
    if repo is not None and name != "train-detector":
        arguments["repo"] = repo  # a git URL (or a path inside the step containers): passed as given
    if tracking_uri:
        arguments["tracking_uri"] = tracking_uri
    return arguments


def _connection(host: str | None, namespace: str | None, token_file: Path | None, no_auth: bool) -> Any:
    from faceops.kfp.pipelines.client import KfpConnection

    return KfpConnection(host=host, namespace=namespace, token_path=token_file, auth="none" if no_auth else "auto")


@pipeline.command()
@_kfp_options
@_run_options
@json_option
def submit(
    host: str | None,
    namespace: str | None,
    token_file: Path | None,
    no_auth: bool,
    image: str | None,
    experiment: str | None,
    service_account: str | None,
    cache_pvc: str | None,
    tracking_uri: str | None,
    name: str,
    repo: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Upload a pipeline to a Kubeflow Pipelines cluster and start a run (returns at once).

    Credentials: the bearer token in FACEOPS_KFP_TOKEN, else the token file (--token-file,
    KF_PIPELINES_SA_TOKEN_PATH, a pod's projected token); a --namespace needs one of them unless --no-auth.
    """
    from faceops.kfp.pipelines.run import submit as submit_run

    arguments = _cluster_arguments(name, repo, tracking_uri, options)
    result = submit_run(
        name,
        arguments,
        image=image,
        experiment=experiment,
        connection=_connection(host, namespace, token_file, no_auth),
        service_account=service_account,
        cache_pvc=cache_pvc,
    )
    if as_json:
        echo_json(result)
    else:
        where = f"{result['host']}" + (f" (namespace {result['namespace']})" if result.get("namespace") else "")
        click.echo(
            f"submitted {result['pipeline']} to {where}: run {result['run_id']} in experiment "
            f"{result['experiment']}\n  {result['url']}"
        )


@pipeline.command()
@click.option(
    "--cron",
    required=True,
    help="When, as a 6-field cron expression with seconds first, e.g. '0 0 3 * * *' (every day at 03:00).",
)
@click.option("--job-name", help="Name of the recurring run (default: '<pipeline> (<cron>)').")
@click.option(
    "--max-concurrency", type=click.IntRange(1, 10), default=1, show_default=True, help="Runs at once, at most."
)
@click.option("--catchup", is_flag=True, help="Start the runs missed while paused (default: only the latest).")
@_kfp_options
@_run_options
@json_option
def schedule(
    cron: str,
    job_name: str | None,
    max_concurrency: int,
    catchup: bool,
    host: str | None,
    namespace: str | None,
    token_file: Path | None,
    no_auth: bool,
    image: str | None,
    experiment: str | None,
    service_account: str | None,
    cache_pvc: str | None,
    tracking_uri: str | None,
    name: str,
    repo: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Create a recurring run of a pipeline on a Kubeflow Pipelines cluster (e.g. a nightly training)."""
    from faceops.kfp.pipelines.client import schedule_pipeline

    arguments = _cluster_arguments(name, repo, tracking_uri, options)
    result = schedule_pipeline(
        name,
        arguments,
        _connection(host, namespace, token_file, no_auth),
        cron=cron,
        image=image,
        experiment=experiment,
        job_name=job_name,
        max_concurrency=max_concurrency,
        catchup=catchup,
        service_account=service_account,
        cache_pvc=cache_pvc,
    )
    if as_json:
        echo_json(result)
    else:
        click.echo(
            f"scheduled {result['pipeline']} ({cron}) in experiment {result['experiment']}: recurring run "
            f"{result['recurring_run_id']}\n  {result['url']}"
        )
