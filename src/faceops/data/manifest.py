"""The manifest of a data version: one row per image, the contract between data, training and evaluation.

``data/manifest.csv`` columns:

=========  ==============================================================================================
path       image path relative to the data root (``<identity>/<file>``)
identity   the identity (folder name)
split      ``train``: training images of training identities;
           ``val``: other images of training identities (closed-set identification);
           ``test``: every image of identities held out of training (open-set verification)
sha256     hex digest of the file bytes
width      pixels
height     pixels
format     PIL format name (JPEG, PNG, ...)
=========  ==============================================================================================
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from faceops.errors import DataValidationFailed

__all__ = ["MANIFEST_NAME", "SPLITS", "ManifestRow", "read_manifest", "write_manifest"]

MANIFEST_NAME = "manifest.csv"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ManifestRow:
    path: str
    identity: str
    split: str
    sha256: str
    width: int
    height: int
    format: str


_COLUMNS = [f.name for f in fields(ManifestRow)]


def write_manifest(rows: list[ManifestRow], path: str | Path) -> Path:
    """Write rows sorted by path (stable diffs between versions)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_COLUMNS)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: r.path):
            writer.writerow(asdict(row))
    tmp.replace(path)
    return path


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a manifest; a missing file, missing columns or a bad split raise :class:`DataValidationFailed`."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise DataValidationFailed(f"no manifest at {path}: import a dataset first ('faceops data import')")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise DataValidationFailed(f"{path}: manifest lacks columns {sorted(missing)}")
        rows = []
        for n, raw in enumerate(reader, start=2):
            if raw["split"] not in SPLITS:
                raise DataValidationFailed(f"{path}:{n}: split {raw['split']!r} is not one of {SPLITS}")
            try:
                rows.append(ManifestRow(raw["path"], raw["identity"], raw["split"], raw["sha256"],
                                        int(raw["width"]), int(raw["height"]), raw["format"]))
            except ValueError as exc:
                raise DataValidationFailed(f"{path}:{n}: bad width/height ({exc})") from exc
    if not rows:
        raise DataValidationFailed(f"{path}: the manifest is empty")
    return rows
