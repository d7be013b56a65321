"""``faceops data import``: build ``data/`` from a source tree and record it as a new data version.

The new folder is built beside the repository's data (in DVC's ignored temp folder), swapped in only when it
is complete, hashed into the DVC cache and committed as ``data.dvc`` alone. A failed import leaves ``data/``,
``data.dvc``, the cache and the remotes as they were.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from faceops.data.denylist import DenyList
from faceops.data.ingest import BuildResult, ImportFilters, Problem, build_dataset
from faceops.data.splits import SplitConfig
from faceops.data.versioning import DATA_DIR, ensure_repo, record_version, replace_data, staging_dir
from faceops.errors import DatasetError

__all__ = ["ImportOutcome", "fetch_lfw_sklearn", "import_dataset"]


@dataclass
class ImportOutcome:
    """The result of an import."""

    data_dir: Path
    images: int
    identities: int
    splits: dict[str, int]
    problems: list[Problem] = field(default_factory=list)
    rev: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "data_dir": str(self.data_dir),
            "images": self.images,
            "identities": self.identities,
            "splits": self.splits,
            "rev": self.rev,
            "problems": [p.__dict__ for p in self.problems],
        }


def import_dataset(
    src: str | Path,
    root: str | Path = ".",
    filters: ImportFilters | None = None,
    splits: SplitConfig | None = None,
    *,
    strict: bool = False,
    commit: bool = True,
    message: str | None = None,
    force: bool = False,
    progress: Callable[[int], object] | None = None,
) -> ImportOutcome:
    """Import the folder-per-identity tree ``src`` as ``root/data`` and record it with DVC (and git).

    Args:
        src: one sub-folder of images per identity.
        root: the git + DVC repository (``dvc init`` is run when needed).
        filters: min / max images per identity, identity list.
        splits: train / val / test draw.
        strict: fail (changing nothing) when any image or identity in the source is unusable.
        commit: commit ``data.dvc`` as a new data version.
        message: the commit message (default: a summary of the import).
        force: replace a ``data/`` that holds changes no data version has.
        progress: called with 1 per image read.

    Identities on the deny list (``deleted-identities.txt``, :mod:`faceops.data.denylist`) are left out.

    Raises:
        DatasetError: unusable source; VersioningError: git / DVC failure. Nothing is changed in either case.
    """
    root = ensure_repo(root)
    src = Path(src).resolve()
    if src == root / DATA_DIR or root / DATA_DIR in src.parents:
        raise DatasetError(f"{src} is the data folder itself: import from a folder outside it")
    stage = staging_dir(root)
    try:
        built: BuildResult = build_dataset(
            src, stage / DATA_DIR, filters, splits, strict=strict, progress=progress, denied=DenyList(root).denies
        )
        counts = built.split_counts()
        meta = {
            "images": len(built.rows),
            "identities": built.identities,
            "splits": counts,
            "source": str(src),
            "filters": (filters or ImportFilters()).model_dump(mode="json"),
            "split_config": (splits or SplitConfig()).model_dump(),
        }
        pointer = replace_data(root, built.root, meta, force=force)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    outcome = ImportOutcome(root / DATA_DIR, len(built.rows), built.identities, counts, built.problems)
    if commit:
        summary = message or (
            f"data: import {src.name} ({len(built.rows)} images, {built.identities} identities; "
            f"train/val/test {counts.get('train', 0)}/{counts.get('val', 0)}/{counts.get('test', 0)})"
        )
        outcome.rev = record_version(root, summary, [".gitignore"] if pointer["gitignore_changed"] else [])
    return outcome


def fetch_lfw_sklearn(data_home: str | Path, min_faces_per_person: int = 0) -> Path:
    """Download LFW (funneled) through scikit-learn's downloader and return its folder-per-identity tree.

    Needs the network the first time (about 200 MB); later calls reuse ``data_home``.

    Raises:
        DatasetError: the download failed (offline, blocked, checksum mismatch).
    """
    import warnings
    from urllib.error import URLError

    from sklearn.datasets import fetch_lfw_people

    data_home = Path(data_home)
    try:
        warnings.filterwarnings("ignore", message="Retry downloading", category=UserWarning)
        # resize keeps the arrays scikit-learn loads on the side small: we only want the files it unpacks.
        fetch_lfw_people(
            data_home=str(data_home),
            funneled=True,
            resize=0.1,
            min_faces_per_person=min_faces_per_person,
            download_if_missing=True,
            n_retries=1,
            delay=0.5,
        )
    except (URLError, TimeoutError, OSError) as exc:
        raise DatasetError(
            f"cannot download LFW with scikit-learn into {data_home} ({exc}); this needs the network: "
            "when offline, import a local copy instead ('faceops data import ../shared/datasets/lfw')"
        ) from exc
    tree = data_home / "lfw_home" / "lfw_funneled"
    if not tree.is_dir():
        raise DatasetError(f"scikit-learn's download did not produce {tree}")
    return tree
