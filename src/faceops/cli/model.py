"""Model life cycle: ``faceops preprocess | train | evaluate`` and ``faceops model list|promote|rollback``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from faceops.cli._common import echo_json, json_option, load_preprocess

__all__ = ["evaluate", "model", "preprocess", "train"]

data_option = click.option(
    "--data",
    "data_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The data version (a folder with manifest.csv); default: the config's data_root (data/).",
)
train_config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Training/evaluation config (YAML, e.g. configs/train.yaml); default: the built-in one.",
)
uri_option = click.option(
    "--tracking-uri",
    default=None,
    help="MLflow tracking URI; default: FACEOPS_MLFLOW_TRACKING_URI (sqlite:///mlruns.db).",
)


@click.command()
@data_option
@click.option(
    "--preprocess-config",
    "pre_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Preprocessing config (YAML); default: the built-in one.",
)
@click.option(
    "--stats",
    "stats_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("outputs/preprocess/stats.csv"),
    show_default=True,
    help="Per-image statistics CSV to write.",
)
@click.option(
    "--chunk", type=click.IntRange(1, 4096), default=64, show_default=True, help="Images per batch."
)
@json_option
def preprocess(
    data_root: Path | None, pre_path: Path | None, stats_path: Path, chunk: int, as_json: bool
) -> None:
    """Detect and align every face of a data version once (cached, resumable) and write per-image
    statistics."""
    from faceops.data.crops import preprocess_dataset
    from faceops.settings import get_settings

    result = preprocess_dataset(
        data_root or Path("data"),
        load_preprocess(pre_path),
        cache_dir=get_settings().cache_dir,
        stats_path=stats_path,
        chunk=chunk,
    )
    summary = {
        "images": len(result.rows),
        "usable": result.usable,
        "processed_now": result.processed,
        "from_cache": len(result.rows) - result.processed,
        "cache": str(result.cache.root),
        "stats": str(result.stats_path),
        "failed": result.failed,
    }
    if as_json:
        echo_json(summary)
        return
    click.echo(
        f"{summary['usable']}/{summary['images']} images with a face "
        f"({summary['processed_now']} detected now, "
        f"{summary['from_cache']} from the cache {summary['cache']}); statistics: {summary['stats']}"
    )
    for path, why in list(result.failed.items())[:20]:
        click.echo(f"  - {path}: {why}", err=True)


@click.command()
@train_config_option
@data_option
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="Output folder (overrides the config)."
)
@click.option("--no-mlflow", is_flag=True, help="Do not log to MLflow or register the model.")
@click.option("--promote", "then_promote", is_flag=True, help="Run the promotion gate on the new challenger.")
@uri_option
@json_option
def train(
    config_path: Path | None,
    data_root: Path | None,
    out: Path | None,
    no_mlflow: bool,
    then_promote: bool,
    tracking_uri: str | None,
    as_json: bool,
) -> None:
    """Fine-tune the embedder on a data version, evaluate it, save the bundle and register it as
    challenger."""
    from faceops.training.config import load_train_config
    from faceops.training.run import flat_metrics, run_training

    config = load_train_config(config_path)
    updates: dict[str, Any] = {k: v for k, v in (("data_root", data_root), ("output_dir", out)) if v is not None}
    if no_mlflow:
        updates["mlflow"] = False
    config = config.model_copy(update=updates)
    if config.mlflow:
        from faceops import registry

        registry.alias_version(registry.CHAMPION, tracking_uri)  # fail fast on an unreachable server
    from faceops.settings import get_settings

    cache_dir = get_settings().cache_dir
    result = run_training(config, tracking_uri, cache_dir=cache_dir)
    summary = {
        "output_dir": str(result.output_dir),
        "bundle": str(result.bundle_dir),
        "version": result.version,
        "run_id": result.run_id,
        "finetuned": flat_metrics(result.report, "finetuned"),
        "pretrained": flat_metrics(result.report, "pretrained"),
        "timings": result.report["timings"],
    }
    if then_promote and result.version:
        from faceops.evaluation.gate import run_gate

        summary["gate"] = run_gate(
            config.data_root,
            config.gate,
            config.evaluation,
            result.version,
            tracking_uri,
            lfw_pairs=config.lfw_pairs,
            cache_dir=cache_dir,
        ).to_dict()
    if as_json:
        echo_json(summary)
    else:
        _print_summary(summary)
    if "gate" in summary and not summary["gate"]["promoted"]:
        raise click.exceptions.Exit(1)


def _print_summary(summary: dict) -> None:  # type: ignore[type-arg]
    ft, pt = summary["finetuned"], summary["pretrained"]
    click.echo(f"bundle: {summary['bundle']}  (MLflow version {summary['version'] or '-'})")
    click.echo(f"{'metric':34s} {'fine-tuned':>11s} {'pretrained':>11s}")
    for key in ft:
        if key in pt:
            click.echo(f"{key:34s} {ft[key]:11.4f} {pt[key]:11.4f}")
    if "gate" in summary:
        gate = summary["gate"]
        click.echo(f"gate: {'PROMOTED' if gate['promoted'] else 'REFUSED'}: {gate['reason']}")


@click.command()
@click.option(
    "--model",
    "models",
    multiple=True,
    default=("models:/faceops@champion",),
    show_default=True,
    help="A bundle folder, an MLflow URI (models:/faceops@champion, models:/faceops/3) or 'pretrained'; "
    "repeat "
    "to compare.",
)
@data_option
@train_config_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("outputs/evaluate"),
    show_default=True,
    help="Folder for report.json and the PNG plots.",
)
@click.option(
    "--lfw-pairs",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also score LFW's pairs protocol (pairs.txt; images beside it).",
)
@click.option("--folds", default=None, help="LFW folds, e.g. '1,2' (default: all).")
@click.option("--log", "log_run", is_flag=True, help="Log the report and plots as an MLflow run.")
@click.option(
    "--robustness",
    is_flag=True,
    help="Run the robustness suite instead: verification pairs (--lfw-pairs / --folds; default the shared LFW "
    "pairs, else the data version's held-out identities) under image conditions, real-photo slices and groups.",
)
@click.option("--conditions", default=None, help="With --robustness: conditions, e.g. 'underexposure,jpeg' (all).")
@click.option(
    "--attributes",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --robustness: attribute CSV (image,<attr>...); default <pairs folder>/attributes.csv if present.",
)
@click.option("--seed", default=0, show_default=True, help="With --robustness: seed of the conditions.")
@uri_option
@json_option
def evaluate(
    models: tuple[str, ...],
    data_root: Path | None,
    config_path: Path | None,
    out: Path,
    lfw_pairs: Path | None,
    folds: str | None,
    log_run: bool,
    robustness: bool,
    conditions: str | None,
    attributes: Path | None,
    seed: int,
    tracking_uri: str | None,
    as_json: bool,
) -> None:
    """Closed-set identification, open-set verification (and LFW pairs) of one or more models on a data
    version; with --robustness, the robustness suite (conditions on the probe side of each pair)."""
    from faceops.evaluation.bundle import ModelBundle
    from faceops.training.config import LfwPairsConfig, load_train_config
    from faceops.training.run import evaluate_bundles, flat_metrics

    config = load_train_config(config_path)
    bundles = {}
    for spec in models:
        if spec == "pretrained":
            bundles[spec] = ModelBundle.pretrained(preprocess=config.preprocess)
        else:
            from faceops import registry

            bundles[spec] = registry.load_bundle(spec, tracking_uri)
    try:
        fold_list = [int(f) for f in folds.split(",")] if folds else None
    except ValueError as exc:
        raise click.BadParameter(f"folds must be comma-separated integers, got {folds!r}") from exc
    from faceops.settings import get_settings

    if robustness:
        names = [c.strip() for c in conditions.split(",") if c.strip()] if conditions else None
        suite = _RobustnessRun(lfw_pairs, fold_list, data_root or config.data_root, config.evaluation.target_far)
        suite.run(bundles, names, attributes, seed, out, tracking_uri if log_run else None, log_run, as_json)
        return
    lfw = LfwPairsConfig(pairs=lfw_pairs, root=lfw_pairs.parent, folds=fold_list) if lfw_pairs else None
    result = evaluate_bundles(
        bundles, data_root or config.data_root, config.evaluation, out, lfw, cache_dir=get_settings().cache_dir
    )
    metrics = {name: flat_metrics(result.report, name) for name in bundles}
    if log_run:
        from faceops import registry

        with registry.open_run("evaluate", tracking_uri, tags={"faceops.kind": "evaluate"}) as run:
            for name, values in metrics.items():
                run.log_metrics({f"{_slug(name)}.{k}": v for k, v in values.items()})
            run.set_tags({f"data.{k}": v for k, v in result.report["data_version"].items()})
            for path in [*result.plots, out / "report.json"]:
                run.log_artifact(path, "evaluation")
    if as_json:
        echo_json({"report": str(out / "report.json"), "metrics": metrics})
        return
    for name, values in metrics.items():
        click.echo(f"{name}:")
        for key, value in values.items():
            click.echo(f"  {key:34s} {value:.4f}")
    click.echo(f"report: {out / 'report.json'}; plots: {', '.join(p.name for p in result.plots)}")


class _RobustnessRun:
    """``faceops evaluate --robustness``: the suite for each model, a JSON report, a heatmap, an MLflow table."""

    def __init__(self, pairs_file: Path | None, folds: list[int] | None, data_root: Path, target_far: float) -> None:
        from faceops.settings import get_settings

        if pairs_file is None:
            shared = get_settings().shared_dir / "datasets" / "lfw" / "pairs.txt"
            pairs_file = shared if shared.is_file() else None
        self.pairs_file, self.folds, self.data_root, self.target_far = pairs_file, folds, data_root, target_far

    def run(
        self,
        bundles: dict[str, Any],
        conditions: list[str] | None,
        attributes_file: Path | None,
        seed: int,
        out: Path,
        tracking_uri: str | None,
        log_run: bool,
        as_json: bool,
    ) -> None:
        import json

        from faceops.evaluation.robustness import attributes_beside, plot_robustness, run_robustness, suite_pairs

        pairs, root = suite_pairs(self.pairs_file, self.folds, self.data_root, seed)
        attributes = attributes_beside(root, attributes_file)
        out.mkdir(parents=True, exist_ok=True)
        summary: dict[str, Any] = {}
        for name, bundle in bundles.items():
            report = run_robustness(
                bundle.recognizer(),
                pairs,
                bundle.threshold,
                self.target_far,
                conditions,
                seed=seed,
                attributes=attributes,
                attribute_root=root,
                progress=lambda stage, done, total: click.echo(f"  {stage}: {done}/{total}", err=True),
            )
            slug = _slug(name)
            path = out / f"robustness-{slug}.json"
            path.write_text(json.dumps(report.to_dict(), indent=2))
            plot = plot_robustness(report, out / f"robustness-{slug}.png")
            summary[name] = {"report": str(path), "plot": str(plot), "table": report.table()}
            if log_run:
                self._log(name, slug, report, path, plot, len(pairs), seed, tracking_uri)
        if as_json:
            echo_json(summary)
            return
        for name, entry in summary.items():
            click.echo(f"{name}: conditions applied to the probe side; report {entry['report']}, plot {entry['plot']}")
            table = entry["table"]
            click.echo(f"  {'':30s} {'pairs':>6s} {'TAR@FAR':>8s} {'FRR@thr':>8s} {'AUC':>6s} {'dTAR':>7s}  status")
            for i in range(len(table["name"])):
                values = [_fmt(table[k][i], w) for k, w in (("tar_at_far", 8), ("frr", 8), ("auc", 6), ("tar_drop", 7))]
                click.echo(f"  {table['name'][i]:30s} {table['pairs'][i]:6d} {' '.join(values)}  {table['status'][i]}")

    def _log(
        self, name: str, slug: str, report: Any, path: Path, plot: Path, pairs: int, seed: int, uri: str | None
    ) -> None:
        from faceops import registry

        with registry.open_run("robustness", uri, tags={"faceops.kind": "robustness"}) as run:
            source = str(self.pairs_file or self.data_root)
            run.log_params({"model": name, "pairs": pairs, "pairs_source": source, "seed": seed})
            run.log_params({"target_far": self.target_far, "folds": self.folds or "all"})
            run.log_metrics(
                {
                    f"{_slug(k)}.{m}": v[m]
                    for k, v in {"clean": report.clean, **report.conditions}.items()
                    for m in ("tar_at_far", "frr", "auc")
                    if v.get(m) is not None
                }
            )
            run.log_table(report.table(), f"robustness/{slug}-table.json")
            run.log_artifact(path, "robustness")
            run.log_artifact(plot, "robustness")


def _fmt(value: Any, width: int) -> str:
    return f"{value:{width}.3f}" if isinstance(value, float) and value == value else f"{'-':>{width}s}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


@click.group()
def model() -> None:
    """The model registry (MLflow): list versions, promote through the gate, roll back."""


@model.command(name="list")
@uri_option
@json_option
def list_models(tracking_uri: str | None, as_json: bool) -> None:
    """Registered versions with their aliases, and the champion history."""
    from faceops import registry

    versions = registry.list_versions(tracking_uri)
    history = registry.champion_history(tracking_uri)
    if as_json:
        echo_json({"versions": versions, "champion_history": history})
        return
    if not versions:
        click.echo(f"no model registered under '{registry.MODEL_NAME}' yet (run `faceops train`)")
        return
    for v in versions:
        tags = v["tags"]
        click.echo(
            f"v{v['version']:>3s}  {','.join(v['aliases']) or '-':20s} {v['created']}  "
            f"threshold={tags.get('threshold')}"
            f"  kind={tags.get('faceops.kind', '-')}"
        )
    for h in history:
        click.echo(f"  {h['at']}  {h['action']:8s} v{h['version']} (was v{h['previous']}): {h['reason']}")


@model.command()
@click.option("--version", default=None, help="The version to promote; default: the challenger.")
@data_option
@train_config_option
@click.option("--force", is_flag=True, help="Skip the gate (recorded in the history).")
@uri_option
@json_option
def promote(
    version: str | None,
    data_root: Path | None,
    config_path: Path | None,
    force: bool,
    tracking_uri: str | None,
    as_json: bool,
) -> None:
    """Evaluate challenger and champion on the same data and move 'champion' only if the gate passes."""
    from faceops.evaluation.gate import run_gate
    from faceops.settings import get_settings
    from faceops.training.config import load_train_config

    config = load_train_config(config_path)
    decision = run_gate(
        data_root or config.data_root,
        config.gate,
        config.evaluation,
        version,
        tracking_uri,
        force,
        config.lfw_pairs,
        cache_dir=get_settings().cache_dir,
    )
    if as_json:
        echo_json(decision.to_dict())
    else:
        verdict = "PROMOTED" if decision.promoted else "REFUSED"
        click.echo(f"{verdict} v{decision.challenger} (champion was v{decision.champion}): {decision.reason}")
    if not decision.promoted:
        raise click.exceptions.Exit(1)


@model.command()
@click.option(
    "--version", default=None, help="The version to give 'champion' back to; default: the one before."
)
@click.option("--reason", default="rollback by hand", show_default=True)
@uri_option
def rollback(version: str | None, reason: str, tracking_uri: str | None) -> None:
    """Move 'champion' back to the previous champion (or to --version)."""
    from faceops import registry

    before = registry.alias_version(registry.CHAMPION, tracking_uri)
    after = registry.rollback(version, reason, tracking_uri)
    click.echo(f"champion: v{before} -> v{after}")
