"""Building a data folder from any folder-per-identity tree: filters, checks, safe names, manifest.

:func:`build_dataset` reads a source tree such as ``../shared/datasets/lfw`` (``<identity>/<image>``), copies
the usable images into a new folder with safe identity and file names, hashes them, reads their size and
format, assigns deterministic splits and writes ``manifest.csv`` and ``import.json`` (source, filters,
problems). It never touches an existing data folder; versioning the result is
:mod:`faceops.data.versioning`'s job.

Everything odd in the source is reported as a :class:`Problem`, never a traceback: a corrupt or unreadable
image, an empty identity folder, a stray file or folder at the wrong level, an identity name with spaces or
non-ASCII letters (stored under a safe name), two names that become the same safe name.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image
from pydantic import Field

from faceops.data.manifest import MANIFEST_NAME, ManifestRow, write_manifest
from faceops.data.splits import SplitConfig, assign_splits
from faceops.errors import DatasetError, InvalidImage
from faceops.face.config import StrictConfig
from faceops.face.images import IMAGE_SUFFIXES, load_image

__all__ = [
    "IMPORT_INFO",
    "SAFE_NAME",
    "BuildResult",
    "ImportFilters",
    "Problem",
    "build_dataset",
    "safe_name",
]

IMPORT_INFO = "import.json"
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ImportFilters(StrictConfig):
    """Which identities and images of a source are taken."""

    min_images: int = Field(default=1, ge=1, description="Identities with fewer usable images are left out.")
    max_images: int | None = Field(
        default=None,
        ge=1,
        description="Keep at most this many images per identity (the first ones by file name).",
    )
    identities: tuple[str, ...] | None = Field(
        default=None, description="Only these identities (source names)."
    )


@dataclass(frozen=True)
class Problem:
    """Something in the source that was skipped or changed.

    Attributes:
        level: ``error`` (an image or identity was dropped because it is unusable) or ``warning``.
        kind: ``corrupt_image``, ``empty_identity``, ``stray_file``, ``stray_folder``, ``renamed``,
        ``name_clash``,
            ``too_few_images``, ``unknown_identity``, ``deleted_identity``.
        path: the source path concerned.
        message: what happened, in words.
    """

    level: str
    kind: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.path}: {self.message}"


@dataclass
class BuildResult:
    """What :func:`build_dataset` wrote."""

    root: Path
    rows: list[ManifestRow]
    problems: list[Problem] = field(default_factory=list)

    @property
    def identities(self) -> int:
        return len({r.identity for r in self.rows})

    def split_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.split] = counts.get(row.split, 0) + 1
        return counts

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]


def safe_name(name: str) -> str:
    """A portable name: accents dropped, spaces and other characters replaced by ``_``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", ascii_name).strip("._-")
    return re.sub(r"_+", "_", cleaned)


def _scan(src: Path, filters: ImportFilters, problems: list[Problem]) -> dict[str, list[Path]]:
    """Source identity name -> its image files (sorted), with problems for everything else."""
    if not src.is_dir():
        raise DatasetError(f"{src}: not a folder (expected one sub-folder of images per identity)")
    tree: dict[str, list[Path]] = {}
    for entry in sorted(src.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            problems.append(
                Problem(
                    "warning",
                    "stray_file",
                    str(entry),
                    "file at the top level ignored (expected one folder per identity)",
                )
            )
            continue
        images = []
        for item in sorted(entry.iterdir()):
            if item.name.startswith("."):
                continue
            if item.is_dir():
                problems.append(
                    Problem(
                        "warning",
                        "stray_folder",
                        str(item),
                        "nested folder ignored (images must sit directly in the identity folder)",
                    )
                )
            elif item.suffix.lower() not in IMAGE_SUFFIXES:
                problems.append(
                    Problem("warning", "stray_file", str(item), "not an image file name, ignored")
                )
            else:
                images.append(item)
        if not images:
            problems.append(
                Problem("warning", "empty_identity", str(entry), "identity folder holds no image")
            )
            continue
        tree[entry.name] = images
    if filters.identities is not None:
        wanted = set(filters.identities)
        for name in sorted(wanted - set(tree)):
            problems.append(
                Problem(
                    "warning",
                    "unknown_identity",
                    str(src / name),
                    "listed identity has no usable folder in the source",
                )
            )
        tree = {k: v for k, v in tree.items() if k in wanted}
    return tree


def _safe_names(tree: dict[str, list[Path]], src: Path, problems: list[Problem]) -> dict[str, str]:
    """Source identity -> stored identity; clashing or empty names are dropped with a problem."""
    mapping: dict[str, str] = {}
    taken: dict[str, str] = {}
    for name in sorted(tree):
        stored = safe_name(name)
        if not stored:
            problems.append(
                Problem("error", "name_clash", str(src / name), "name has no usable character; skipped")
            )
            continue
        if stored.lower() in taken:
            problems.append(
                Problem(
                    "error",
                    "name_clash",
                    str(src / name),
                    f"becomes {stored!r}, like {taken[stored.lower()]!r}; skipped",
                )
            )
            continue
        if stored != name:
            problems.append(Problem("warning", "renamed", str(src / name), f"stored as identity {stored!r}"))
        taken[stored.lower()] = name
        mapping[name] = stored
    return mapping


@dataclass
class _Image:
    source: Path
    rel: str
    data: bytes
    sha256: str
    width: int
    height: int
    format: str


def _read(path: Path, rel: str, problems: list[Problem]) -> _Image | None:
    try:
        data = path.read_bytes()
        array = load_image(data, name=str(path))
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format or "UNKNOWN"
    except InvalidImage as exc:
        problems.append(Problem("error", "corrupt_image", str(path), f"{type(exc).__name__}: {exc}"))
        return None
    except OSError as exc:
        problems.append(Problem("error", "corrupt_image", str(path), f"cannot read ({exc})"))
        return None
    return _Image(
        path, rel, data, hashlib.sha256(data).hexdigest(), int(array.shape[1]), int(array.shape[0]), fmt
    )


def _file_name(path: Path, used: set[str]) -> str:
    stem = safe_name(path.stem) or "image"
    name, n = f"{stem}{path.suffix.lower()}", 1
    while name.lower() in used:
        n += 1
        name = f"{stem}_{n}{path.suffix.lower()}"
    used.add(name.lower())
    return name


def build_dataset(
    src: str | Path,
    dest: str | Path,
    filters: ImportFilters | None = None,
    splits: SplitConfig | None = None,
    *,
    strict: bool = False,
    progress: Callable[[int], object] | None = None,
    denied: Callable[[str], bool] | None = None,
) -> BuildResult:
    """Build a new data folder ``dest`` (which must not exist) from the tree at ``src``.

    Args:
        src: a folder with one sub-folder of images per identity.
        dest: the folder to create.
        filters: minimum / maximum images per identity and an identity list.
        splits: how train / val / test are drawn.
        strict: raise instead of skipping when any image or identity is unusable.
        progress: called with the number of images read after each one (e.g. a tqdm ``update``).
        denied: identities (source names) deleted on request (:class:`~faceops.data.denylist.DenyList`): left
            out, counted in one problem that does not name them.

    Raises:
        DatasetError: the source is missing, holds nothing usable, or (``strict``) holds an unusable item;
            ``dest`` is then left absent.
    """
    src, dest, filters = Path(src), Path(dest), filters or ImportFilters()
    if dest.exists():
        raise DatasetError(f"{dest} already exists: refusing to overwrite it")
    problems: list[Problem] = []
    tree = _scan(src, filters, problems)
    gone = [name for name in tree if denied is not None and denied(name)]
    for name in gone:
        del tree[name]
    if gone:
        problems.append(
            Problem("warning", "deleted_identity", str(src), f"{len(gone)} identit(ies) deleted on request left out")
        )
    names = _safe_names(tree, src, problems)
    kept: dict[str, list[_Image]] = {}
    dest.mkdir(parents=True)
    try:
        for name, stored in names.items():
            images = _read_identity(tree[name], stored, filters.max_images, problems, progress)
            if len(images) < filters.min_images:
                if images and len(images) < len(tree[name]):
                    problems.append(
                        Problem(
                            "warning",
                            "too_few_images",
                            str(src / name),
                            f"{len(images)} usable image(s), fewer than the minimum "
                            f"{filters.min_images}; left out",
                        )
                    )
                continue
            (dest / stored).mkdir()
            for image in images:
                (dest / image.rel).write_bytes(image.data)
                image.data = b""  # written: do not hold a whole dataset in memory
            kept[stored] = images
        if strict and any(p.level == "error" for p in problems):
            raise DatasetError(
                "strict import refused the source:\n"
                + "\n".join(f"  {p}" for p in problems if p.level == "error")
            )
        if not kept:
            raise DatasetError(
                f"{src}: no identity with at least {filters.min_images} usable image(s) "
                f"({len(problems)} problem(s) found)"
            )
        split = assign_splits({k: [i.rel for i in v] for k, v in kept.items()}, splits)
        rows = [
            ManifestRow(i.rel, stored, split[i.rel], i.sha256, i.width, i.height, i.format)
            for stored, images in kept.items()
            for i in images
        ]
        write_manifest(rows, dest / MANIFEST_NAME)
        info = {
            "source": str(src.resolve()),
            "filters": filters.model_dump(mode="json"),
            "splits": (splits or SplitConfig()).model_dump(),
            "images": len(rows),
            "identities": len(kept),
            "problems": [asdict(p) for p in problems],
        }
        (dest / IMPORT_INFO).write_text(json.dumps(info, indent=2))
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return BuildResult(dest, sorted(rows, key=lambda r: r.path), problems)


def _read_identity(
    paths: list[Path],
    stored: str,
    max_images: int | None,
    problems: list[Problem],
    progress: Callable[[int], object] | None,
) -> list[_Image]:
    images: list[_Image] = []
    used: set[str] = set()
    for path in paths:
        if max_images is not None and len(images) >= max_images:
            break
        image = _read(path, f"{stored}/{_file_name(path, used)}", problems)
        if progress:
            progress(1)
        if image is not None:
            images.append(image)
    return images
