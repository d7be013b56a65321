"""``faceops data``: import, version, restore, validate, report, push and pull face datasets."""

from __future__ import annotations

from pathlib import Path

import click

from faceops.cli._common import echo_json, json_option, progress
from faceops.errors import DataValidationFailed

__all__ = ["data"]

root_option = click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The git + DVC repository that holds data/ and data.dvc.",
)
remote_option = click.option(
    "--remote",
    default="local",
    show_default=True,
    help="'local' (offline folder, settings.dvc_local_remote), 's3' (FACEOPS_S3_*) or "
    "another remote of .dvc/config.",
)
data_option = click.option(
    "--data",
    "data_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data"),
    show_default=True,
    help="The data folder (with manifest.csv).",
)
stats_option = click.option(
    "--stats",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Precomputed per-image statistics (CSV/JSON: path, face_found, ...) to use "
    "instead of running the face detector.",
)


@click.group()
def data() -> None:
    """Versioned face datasets: import, versions, restore, validate, report, push, pull."""


def _identity_list(path: Path | None, names: tuple[str, ...]) -> tuple[str, ...] | None:
    listed = list(names)
    if path is not None:
        for line in path.read_text(encoding="utf-8").splitlines():
            name = line.split("\t")[0].strip()  # LFW's people files: "name<TAB>count"
            if name and not name.startswith("#"):
                listed.append(name)
    return tuple(listed) if listed else None


@data.command(name="import")
@click.argument("src", required=False, type=click.Path(path_type=Path))
@root_option
@click.option(
    "--min-images",
    type=click.IntRange(1, None),
    default=1,
    show_default=True,
    help="Leave out identities with fewer usable images.",
)
@click.option(
    "--max-images", type=click.IntRange(1, None), help="Keep at most this many images per identity."
)
@click.option(
    "--identities",
    "identities_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File with one identity per line (LFW's people_min10.txt works).",
)
@click.option("--identity", "identity_names", multiple=True, help="Only this identity (repeatable).")
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of identities held out for open-set testing.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of each training identity's images kept for closed-set validation.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split draws.")
@click.option(
    "--strict", is_flag=True, help="Fail, changing nothing, when any image or identity is unusable."
)
@click.option(
    "--commit/--no-commit", default=True, show_default=True, help="Commit data.dvc as a new version."
)
@click.option("-m", "--message", help="Commit message of the new data version.")
@click.option("--force", is_flag=True, help="Replace a data/ folder that holds unrecorded changes.")
@click.option(
    "--sklearn-lfw",
    "sklearn_home",
    type=click.Path(file_okay=False, path_type=Path),
    help="Instead of SRC: download LFW with scikit-learn into this folder (needs the network).",
)
@json_option
def import_(
    src: Path | None,
    root: Path,
    min_images: int,
    max_images: int | None,
    identities_file: Path | None,
    identity_names: tuple[str, ...],
    test_fraction: float,
    val_fraction: float,
    seed: int,
    strict: bool,
    commit: bool,
    message: str | None,
    force: bool,
    sklearn_home: Path | None,
    as_json: bool,
) -> None:
    """Build data/ from SRC (one folder of images per identity) and record it as a new data version."""
    from faceops.data.importer import fetch_lfw_sklearn, import_dataset
    from faceops.data.ingest import ImportFilters
    from faceops.data.splits import SplitConfig

    if (src is None) == (sklearn_home is None):
        raise click.UsageError("give either SRC or --sklearn-lfw FOLDER")
    if sklearn_home is not None:
        src = fetch_lfw_sklearn(sklearn_home, min_images)
    assert src is not None
    filters = ImportFilters(
        min_images=min_images,
        max_images=max_images,
        identities=_identity_list(identities_file, identity_names),
    )
    splits = SplitConfig(test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
    with progress(desc="import") as bar:
        outcome = import_dataset(
            src,
            root,
            filters,
            splits,
            strict=strict,
            commit=commit,
            message=message,
            force=force,
            progress=bar.update,
        )
    if as_json:
        echo_json(outcome.to_dict())
        return
    click.echo(
        f"imported {outcome.images} images of {outcome.identities} identities into {outcome.data_dir} "
        f"(splits {outcome.splits})"
    )
    click.echo(
        f"data version {outcome.rev[:10]} recorded" if outcome.rev else "data.dvc updated, not committed"
    )
    if outcome.problems:
        click.echo(f"\n{len(outcome.problems)} problem(s) in the source:", err=True)
        for problem in outcome.problems:
            click.echo(f"  - {problem.level}: {problem}", err=True)


@data.command()
@root_option
@click.option("-n", "--limit", type=click.IntRange(1, None), help="Only the newest N versions.")
@json_option
def versions(root: Path, limit: int | None, as_json: bool) -> None:
    """List the data versions (commits that changed data.dvc), newest first."""
    from faceops.data.versioning import list_versions

    found = list_versions(root, limit)
    if as_json:
        echo_json([v.to_dict() for v in found])
        return
    if not found:
        click.echo("no data version yet: run 'faceops data import SRC'")
    for v in found:
        click.echo(
            f"{v.rev[:10]}  {v.date[:19]}  {v.images or '?':>6} images  {v.identities or '?':>5} identities  "
            f"{v.message}"
        )


@data.command()
@click.argument("rev")
@root_option
@click.option("--remote", help="Remote to pull missing files from (default: the default remote).")
@click.option("--force", is_flag=True, help="Discard unrecorded changes in data/.")
def restore(rev: str, root: Path, remote: str | None, force: bool) -> None:
    """Restore data/ (and data.dvc) to data version REV (a commit hash, tag or HEAD~N)."""
    from faceops.data.remotes import remote_env
    from faceops.data.versioning import restore_version

    full = restore_version(root, rev, remote=remote, env=remote_env(), force=force)
    click.echo(f"data/ restored to version {full[:10]}; commit data.dvc to make it the current version")


@data.command()
@data_option
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Validation thresholds (YAML, see ValidationConfig).",
)
@stats_option
@click.option("--face-sample", type=click.IntRange(0, None), help="Images run through the face detector.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("outputs/validation"),
    show_default=True,
    help="Folder for validation.json and the HTML data docs.",
)
@json_option
def validate(
    data_root: Path,
    config_path: Path | None,
    stats: Path | None,
    face_sample: int | None,
    out: Path,
    as_json: bool,
) -> None:
    """Validate a data version with Great Expectations; exits 1 when an expectation fails."""
    from faceops.data.validation import ValidationConfig, validate_dataset
    from faceops.face.config import load_yaml_config

    config = load_yaml_config(config_path, ValidationConfig) if config_path else ValidationConfig()
    if face_sample is not None:
        config = config.model_copy(update={"face_sample": face_sample})
    with progress(desc="validate") as bar:
        report = validate_dataset(data_root, config, stats=stats, out_dir=out, progress=bar.update)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(f"results: {report.result_path}\ndata docs: {report.docs_path}")
    if not report.success:
        raise DataValidationFailed(report.summary())
    click.echo(report.summary())


@data.command()
@data_option
@stats_option
@click.option(
    "--face-sample",
    type=click.IntRange(0, None),
    default=64,
    show_default=True,
    help="Images run through the face detector (when no --stats).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("outputs/data_report"),
    show_default=True,
    help="Folder for report.html, plots/, summary.json.",
)
def report(data_root: Path, stats: Path | None, face_sample: int, out: Path) -> None:
    """Write the EDA report (self-contained HTML with plots) of a data version."""
    from faceops.data.report import build_report

    with progress(desc="report") as bar:
        result = build_report(data_root, out, stats=stats, face_sample=face_sample, progress=bar.update)
    click.echo(f"report: {result.html}")


@data.command()
@root_option
@remote_option
def push(root: Path, remote: str) -> None:
    """Upload the current data version to a remote."""
    from faceops.data.remotes import push as push_data

    click.echo(push_data(root.resolve(), remote).strip() or "everything is up to date")


@data.command()
@root_option
@remote_option
def pull(root: Path, remote: str) -> None:
    """Download the current data version (data.dvc) from a remote into data/."""
    from faceops.data.remotes import pull as pull_data

    click.echo(pull_data(root.resolve(), remote).strip() or "everything is up to date")


@data.command()
@root_option
@remote_option
@json_option
def status(root: Path, remote: str, as_json: bool) -> None:
    """Compare the current data version with a remote (dvc status -c)."""
    from faceops.data.remotes import remote_status

    result = remote_status(root.resolve(), remote)
    if as_json:
        echo_json(result)
    else:
        click.echo("in sync with the remote" if not result else f"differs from the remote: {result}")
