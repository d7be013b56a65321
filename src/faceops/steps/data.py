"""The steps of the training pipeline as plain functions: data version, validation, sharded preprocessing.

Each function is what one Kubeflow component calls (``components/``): it takes paths and plain values, writes
its files into an output folder and returns the figures the component logs as metrics. Nothing here imports
kfp; the functions compose the data layer (:mod:`faceops.data`) and :mod:`faceops.data.crops` without changing
them. The model steps (train, evaluate, register and gate) are in :mod:`faceops.steps.model`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from faceops.errors import ConfigError, DatasetError, DataValidationFailed, VersioningError

__all__ = [
    "data_version_info",
    "parse_config",
    "preprocess_all",
    "preprocess_shard",
    "prepare_data",
    "shard_of",
    "train_config",
    "validate_step",
]


def parse_config(model: type[BaseModel], values: dict[str, Any] | None, what: str) -> Any:
    """``model`` from a dict of pipeline parameters; unknown keys or bad values raise :class:`ConfigError`."""
    try:
        return model.model_validate(values or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '-'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"bad {what}: {problems}") from exc


def train_config(run_config: dict[str, Any] | None, data_dir: str | Path, out_dir: str | Path) -> Any:
    """The :class:`~faceops.training.config.TrainConfig` of a pipeline run: the run config with the pipeline's
    own data folder and output folder, and MLflow left to the register step."""
    from faceops.training.config import TrainConfig

    values = {**(run_config or {}), "data_root": str(data_dir), "output_dir": str(out_dir), "mlflow": False}
    return parse_config(TrainConfig, values, "run config")


# --- the data version ------------------------------------------------------------------------------------


def data_version_info(root: str | Path) -> dict[str, Any]:
    """The data version in ``root``'s workspace: DVC md5, the commit that recorded it, counts, data folder.

    ``rev`` is ``"uncommitted"`` when ``data.dvc`` differs from the last commit (e.g. after a restore).
    """
    from faceops.data.versioning import git, pointer_path, read_pointer

    root = Path(root).resolve()
    pointer = read_pointer(root)
    if pointer is None:
        raise DatasetError(
            f"{root} holds no data version (no data.dvc): import one first "
            "('faceops data import SRC' or 'faceops pipeline run --source SRC')"
        )
    name = pointer_path(root).name
    changed = git(root, "status", "--porcelain", "--", name).strip()
    rev = "uncommitted" if changed else git(root, "log", "-n1", "--format=%H", "--", name).strip()
    return {
        "rev": rev or "uncommitted",
        "md5": pointer.md5,
        "data_dir": str(root / "data"),
        "images": int(pointer.images or 0),
        "identities": int(pointer.identities or 0),
        "splits": pointer.splits or {},
        "source": pointer.meta.get("source"),
    }


def _wants_import(root: Path, source: Path, filters: dict[str, Any]) -> bool:
    """Whether ``source`` with ``filters`` must be imported (not when it is the clean current version)."""
    from faceops.data.versioning import read_pointer, workspace_status

    pointer = read_pointer(root)
    meta = pointer.meta if pointer else {}
    same = meta.get("source") == str(source) and meta.get("filters") == filters
    return not (same and (root / "data").is_dir() and not workspace_status(root))


def prepare_data(
    repo: str | Path,
    source: str = "",
    data_version: str = "",
    identities_file: str = "",
    min_images: int = 1,
    max_images: int = 0,
    remote: str = "local",
) -> dict[str, Any]:
    """Make the wanted data version the workspace's ``data/`` and return :func:`data_version_info` of it.

    With ``source``, that folder-per-identity tree is imported as a new data version (skipped when the current
    version is that same import, so a second run reuses it). Else ``data_version`` (a git revision of
    ``data.dvc``) is restored from the DVC cache or remote; empty means the current version. The version is
    then pushed to ``remote`` (empty: no push) so other machines can pull it.

    Raises:
        DatasetError: nothing to train on; VersioningError: git / DVC failed, or ``data/`` has unrecorded
            changes.
    """
    from faceops.data.importer import import_dataset
    from faceops.data.ingest import ImportFilters
    from faceops.data.remotes import push, remote_env
    from faceops.data.versioning import ensure_repo, read_pointer, resolve_rev, restore_version, workspace_status

    root = ensure_repo(repo)
    imported = False
    if source:
        src = Path(source).resolve()
        names = _read_identities(Path(identities_file)) if identities_file else None
        filters = ImportFilters(min_images=min_images, max_images=max_images or None, identities=names)
        if _wants_import(root, src, filters.model_dump(mode="json")):
            import_dataset(src, root, filters, progress=_progress("import"))
            imported = True
    elif data_version:
        wanted, current = read_pointer(root, resolve_rev(root, data_version)), read_pointer(root)
        if wanted is None or current is None or wanted.md5 != current.md5 or workspace_status(root):
            restore_version(root, data_version, env=remote_env())
    info = data_version_info(root)
    if workspace_status(root):
        raise VersioningError(
            f"{root / 'data'} has changes that no data version records: run 'faceops data import' "
            "or 'faceops data restore' first, so the model can be traced back to its data"
        )
    if remote:
        push(root, remote)
    return {**info, "imported": imported, "pushed_to": remote or None}


def _read_identities(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise DatasetError(f"{path}: identity list not found")
    names = [line.split("\t")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return tuple(n for n in names if n and not n.startswith("#"))


def _progress(desc: str) -> Any:
    import sys

    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="img", file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 10)
    return bar.update


# --- validation ------------------------------------------------------------------------------------------


def validate_step(data_dir: str | Path, out_dir: str | Path, overrides: dict[str, Any] | None = None) -> dict:
    """Validate the data version with Great Expectations; write ``validation.json``, data docs and
    ``report.html``.

    Returns:
        the metrics (images, checks passed and failed).

    Raises:
        DataValidationFailed: a check failed (its summary names the offending files); the reports are written
        first.
    """
    from faceops.data.validation import ValidationConfig, validate_dataset
    from faceops.reports.page import write_page

    config = parse_config(ValidationConfig, overrides, "validation config")
    out = Path(out_dir)
    report = validate_dataset(data_dir, config, out_dir=out, progress=_progress("validate"))
    checks = [
        {"check": c.name, "passed": c.success, "offending": c.unexpected_count, "what": c.description}
        for c in report.checks
    ]
    write_page(
        out / "report.html",
        "Data validation",
        {
            "Summary": report.summary(),  # text: escaped by the writer, line breaks kept
            "Checks": checks,
            "Skipped": report.skipped or "-",
        },
    )
    metrics = {
        "images": float(report.images),
        "checks_passed": float(len(report.checks) - len(report.failed())),
        "checks_failed": float(len(report.failed())),
    }
    if not report.success:
        raise DataValidationFailed(f"data version {data_dir}: {report.summary()}")
    return metrics


# --- preprocessing, fanned out over shards ---------------------------------------------------------------


def shard_of(sha256: str, shards: int) -> int:
    """The shard of an image: a hash of its bytes, so an image keeps its shard across data versions."""
    return int(sha256[:8], 16) % shards


def _preprocess_config(run_config: dict[str, Any] | None) -> Any:
    from faceops.face.config import PreprocessConfig

    return parse_config(PreprocessConfig, (run_config or {}).get("preprocess"), "preprocess config")


def preprocess_shard(
    data_dir: str | Path,
    run_config: dict[str, Any] | None,
    shard: int,
    shards: int,
    cache_dir: str | Path,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Detect and align the faces of one shard of the data version into the shared crop cache.

    Args:
        cache_dir: the cache root shared by every step (the crops go to ``<cache_dir>/crops-<crop fingerprint>``).
        progress: called with (images done, images to do) as batches finish.
    """
    from faceops.data.crops import preprocess_rows
    from faceops.data.manifest import read_manifest

    if not 0 <= shard < shards:
        raise ConfigError(f"shard {shard} is not in [0, {shards})")
    root = Path(data_dir)
    rows = [r for r in read_manifest(root) if shard_of(r.sha256, shards) == shard]
    result = preprocess_rows(
        root, rows, _preprocess_config(run_config), cache_dir=Path(cache_dir), progress=progress
    )
    return {
        "shard": float(shard),
        "images": float(len(rows)),
        "processed": float(result.processed),
        "no_face": float(len(result.failed)),
    }


def preprocess_all(
    data_dir: str | Path, run_config: dict[str, Any] | None, out_dir: str | Path, cache_dir: str | Path
) -> dict[str, float]:
    """Gather the shards (every image is now cached): write ``stats.csv`` and ``preprocess.json``."""
    from faceops.data.crops import preprocess_dataset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = _preprocess_config(run_config)
    result = preprocess_dataset(data_dir, config, cache_dir=Path(cache_dir), stats_path=out / "stats.csv")
    summary = {
        "data_dir": str(data_dir),
        "fingerprint": config.fingerprint(),
        "cache_dir": str(Path(cache_dir).resolve()),
        "images": len(result.rows),
        "usable": result.usable,
        "processed_now": result.processed,
        "failed": result.failed,
    }
    (out / "preprocess.json").write_text(json.dumps(summary, indent=2))
    return {
        "images": float(len(result.rows)),
        "usable": float(result.usable),
        "no_face": float(len(result.failed)),
        "processed_now": float(result.processed),
    }
