"""``faceops monitor``: run the production monitor once or every N minutes, log a reference, list decisions.

The ``monitoring`` package (Evidently, MLflow, kfp) is imported inside the commands, so ``faceops --help`` and
the other commands stay fast and work without it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from faceops.cli._common import echo_json, json_option

__all__ = ["monitor"]

_config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Monitor config (YAML); default: the built-in one.",
)


def _load(config_path: Path | None, **overrides: Any) -> Any:
    from faceops.monitoring.config import MonitorConfig, load_monitor_config

    config = load_monitor_config(config_path)
    changes = {k: v for k, v in overrides.items() if v is not None}
    return MonitorConfig.model_validate({**config.model_dump(), **changes}) if changes else config


def _echo_run(run: Any, as_json: bool) -> None:
    if as_json:
        echo_json(run.to_dict())
        return
    click.echo(f"{time.strftime('%H:%M:%S')} {run.action} (model version {run.model_version})")
    for reason in run.reasons:
        click.echo(f"  - {reason}")
    for alert in run.alerts:
        click.echo(f"  alert {alert['sink']}: {'sent' if alert['ok'] else 'FAILED ' + str(alert['error'])}")
    if run.report_dir:
        click.echo(f"  report: {run.report_dir / 'report.html'}")


@click.group()
def monitor() -> None:
    """Production monitoring: drift, accuracy/FAR from feedback, alerts, automated retraining."""


@monitor.command("run")
@_config_option
@click.option("--every", help="Run again every DURATION (e.g. 10m) until stopped; default: run once.")
@click.option("--max-runs", type=click.IntRange(min=1), help="With --every: stop after this many runs.")
@click.option(
    "--since", type=float, help="Window start (unix seconds); default: now minus the config's window."
)
@click.option("--window", help="Window length (e.g. 1h), replacing the config's.")
@click.option(
    "--request-log",
    type=click.Path(path_type=Path),
    help="The service's request log: a SQLite file or a postgresql:// URL; default: the "
    "FACEOPS_MONITOR_REQUEST_LOG setting (keeps a URL's password off the command line), else the config's.",
)
@click.option("--no-trigger", is_flag=True, help="Alert only: never start a retraining.")
@json_option
def run_command(
    config_path: Path | None,
    every: str | None,
    max_runs: int | None,
    since: float | None,
    window: str | None,
    request_log: Path | None,
    no_trigger: bool,
    as_json: bool,
) -> None:
    """Judge a window of serving logs against the champion's reference; alert and retrain by the policy.

    Exit code 0 whatever the verdict (the verdict is in the output, the report and the decision log), 1 when a
    single run could not judge at all (action 'error').
    """
    from faceops.monitoring.monitor import run_every, run_once
    from faceops.telemetry.stats import parse_duration

    if request_log is None:
        from faceops.settings import get_settings

        secret = get_settings().monitor_request_log
        request_log = Path(secret.get_secret_value()) if secret is not None else None
    config = _load(config_path, window=window, request_log=request_log)
    if no_trigger:
        config = config.model_copy(update={"trigger": config.trigger.model_copy(update={"enabled": False})})
    if every is None:
        run = run_once(config, since=since)
        _echo_run(run, as_json)
        if run.action == "error":
            raise click.exceptions.Exit(1)
        return
    seconds = parse_duration(every)
    click.echo(f"monitoring every {every} (Ctrl-C stops)", err=True)
    try:
        run_every(config, seconds, max_runs=max_runs, on_run=lambda r: _echo_run(r, as_json))
    except KeyboardInterrupt:
        click.echo("stopped", err=True)


@monitor.command("reference")
@_config_option
@click.option("--version", "version", help="Model version; default: the champion.")
@click.option(
    "--data-root",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The data version to compute the reference on (data/ with its manifest).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Also save it here.")
@click.option("--no-mlflow", is_flag=True, help="Do not log it to MLflow (with --out and --bundle).")
@click.option(
    "--bundle",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A local bundle folder instead of the registry's version.",
)
@json_option
def reference_command(
    config_path: Path | None,
    version: str | None,
    data_root: Path,
    out: Path | None,
    no_mlflow: bool,
    bundle: Path | None,
    as_json: bool,
) -> None:
    """Compute a model's monitoring reference and log it with the model version's MLflow run."""
    from faceops.cli._common import progress
    from faceops.errors import ConfigError
    from faceops.evaluation.bundle import ModelBundle
    from faceops.monitoring import reference as store
    from faceops.telemetry.reference import compute_reference

    config = _load(config_path)
    if no_mlflow and not out:
        raise ConfigError("--no-mlflow needs --out (where to save the reference)")
    if bundle is None:
        version = version or store.champion_version(config.tracking_uri)
        model = store.load_model(version, config.tracking_uri, config.reports_dir / ".cache")
    else:
        model = ModelBundle.load(bundle)
    with progress(desc="reference") as bar:
        reference = compute_reference(model, data_root, progress=bar.update)
    result: dict[str, Any] = {"probes": len(reference), "performance": reference.meta["performance"]}
    if version is not None:
        reference.meta["model_version"] = version
    if out:
        result["saved"] = str(reference.save(out))
    if not no_mlflow:
        if version is None:
            raise ConfigError("logging to MLflow needs --version (the model version whose run holds it)")
        result["run_id"] = store.log_reference(reference, version, config.tracking_uri)
    if as_json:
        echo_json(result)
    else:
        acc = reference.meta["performance"]["accuracy"]
        click.echo(f"reference of {len(reference)} probe faces, accuracy {acc['value']:.3f}; {result}")


@monitor.command("decisions")
@_config_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@json_option
def decisions_command(config_path: Path | None, limit: int, as_json: bool) -> None:
    """The monitor's recorded decisions, newest first, with their reasons (from the configured state: the local
    file, or the MLflow server)."""
    from faceops.monitoring.state import open_state

    config = _load(config_path)
    with open_state(
        config.state_backend, config.state_path, tracking_uri=config.tracking_uri, experiment=config.state_experiment
    ) as state:
        rows = state.decisions(limit)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["ts"]))
        click.echo(f"{stamp} {row['action']:<17} v{row['model_version']}: {'; '.join(row['reasons'])[:300]}")
