"""LFW pairs files: the real protocol file and malformed ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceops.errors import PairsFormatError
from faceops.evaluation.pairs import read_lfw_pairs, read_pairs


def test_real_lfw_pairs_file(lfw: Path) -> None:
    pairs = read_lfw_pairs(lfw / "pairs.txt", lfw)
    assert len(pairs) == 4800
    assert {p.fold for p in pairs} == set(range(1, 9))
    fold1 = [p for p in pairs if p.fold == 1]
    assert sum(p.same for p in fold1) == 300 and len(fold1) == 600
    assert all(p.a.is_file() and p.b.is_file() for p in fold1)
    assert len(read_lfw_pairs(lfw / "pairs.txt", lfw, folds=[2, 3])) == 1200


def test_deepface_csv(datasets: Path) -> None:
    root = datasets / "deepface_testset"
    pairs = read_pairs(root / "pairs.csv", root)
    assert len(pairs) == 300 and sum(p.same for p in pairs) == 38
    assert all(p.a.is_file() for p in pairs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("two folds\n", "header"),
        ("1 2\nA 1 2\n", "announces"),
        ("1 1\nA 1 2 3 4 5\nB 1 C 2\n", "expected 3 fields"),
        ("1 1\nA one 2\nB 1 C 2\n", "not an integer"),
        ("", "empty"),
    ],
)
def test_malformed_pairs_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(PairsFormatError, match=message):
        read_lfw_pairs(path, tmp_path)


def test_unknown_fold(lfw: Path) -> None:
    with pytest.raises(PairsFormatError, match="folds 1-8"):
        read_lfw_pairs(lfw / "pairs.txt", lfw, folds=[9])
