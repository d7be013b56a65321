"""Verification pair lists: LFW's ``pairs.txt`` format and simple CSV files.

LFW format: a header line ``<folds> <n>`` (or just ``<n>`` for one fold), then for each fold ``n`` matched lines
``name i j`` followed by ``n`` mismatched lines ``name1 i name2 j``. Image ``i`` of ``name`` is
``<root>/<name>/<name>_<iiii>.jpg``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from faceops.errors import PairsFormatError

__all__ = ["Pair", "read_lfw_pairs", "read_pairs", "read_pairs_csv"]


@dataclass(frozen=True)
class Pair:
    """Two image paths, whether they show the same person, and the fold they belong to."""

    a: Path
    b: Path
    same: bool
    fold: int


def _lfw_path(root: Path, name: str, number: str, where: str) -> Path:
    try:
        index = int(number)
    except ValueError as exc:
        raise PairsFormatError(f"{where}: image number {number!r} is not an integer") from exc
    return root / name / f"{name}_{index:04d}.jpg"


def read_lfw_pairs(path: str | Path, root: str | Path, folds: list[int] | None = None) -> list[Pair]:
    """Parse an LFW pairs file; ``folds`` (1-based) keeps only those folds."""
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise PairsFormatError(f"pairs file not found: {path}")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise PairsFormatError(f"{path}: empty pairs file")
    try:
        header = [int(v) for v in lines[0]]
    except ValueError as exc:
        raise PairsFormatError(f"{path}:1: header must be '<folds> <pairs per fold>' or '<pairs>'") from exc
    n_folds, per_fold = (header[0], header[1]) if len(header) == 2 else (1, header[0])
    body = lines[1:]
    if len(body) != n_folds * 2 * per_fold:
        raise PairsFormatError(
            f"{path}: header announces {n_folds} folds of {per_fold} matched + {per_fold} mismatched pairs "
            f"({n_folds * 2 * per_fold} lines) but the file has {len(body)}"
        )
    pairs = []
    for offset, fields in enumerate(body):
        fold = offset // (2 * per_fold) + 1
        where = f"{path}:{offset + 2}"
        if len(fields) == 3:
            name, i, j = fields
            pairs.append(Pair(_lfw_path(root, name, i, where), _lfw_path(root, name, j, where), True, fold))
        elif len(fields) == 4:
            n1, i, n2, j = fields
            pairs.append(Pair(_lfw_path(root, n1, i, where), _lfw_path(root, n2, j, where), False, fold))
        else:
            raise PairsFormatError(f"{where}: expected 3 fields (matched) or 4 (mismatched), got {len(fields)}")
    if folds:
        unknown = set(folds) - set(range(1, n_folds + 1))
        if unknown:
            raise PairsFormatError(f"{path} has folds 1-{n_folds}; asked for {sorted(unknown)}")
        pairs = [p for p in pairs if p.fold in folds]
    return pairs


def read_pairs_csv(path: str | Path, root: str | Path) -> list[Pair]:
    """Pairs from a CSV with columns ``a``/``b`` (or ``img1``/``img2``, ``file_x``/``file_y``) and ``same_person`` (1/0); one fold."""
    path, root = Path(path), Path(root)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or [])
        a_key = next((k for k in ("a", "img1", "file_x") if k in fields), "a")
        b_key = next((k for k in ("b", "img2", "file_y") if k in fields), "b")
        if not {a_key, b_key, "same_person"} <= fields:
            raise PairsFormatError(f"{path}: needs columns a, b (or img1, img2, or file_x, file_y) and same_person")
        return [
            Pair(root / row[a_key], root / row[b_key], str(row["same_person"]).strip() in ("1", "True", "true"), 1)
            for row in reader
        ]


def read_pairs(path: str | Path, root: str | Path, folds: list[int] | None = None) -> list[Pair]:
    """Read a pairs file by its suffix: ``.csv`` or LFW text."""
    if Path(path).suffix.lower() == ".csv":
        return read_pairs_csv(path, root)
    return read_lfw_pairs(path, root, folds)
