"""Building a data folder from a source tree: manifest, deterministic splits, filters, and bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from faceops.data.importer import fetch_lfw_sklearn
from faceops.data.ingest import ImportFilters, build_dataset, safe_name
from faceops.data.manifest import read_manifest
from faceops.data.splits import SplitConfig, assign_splits
from faceops.errors import DatasetError

PER_PERSON = 5  # photos per person in the `source` fixture


def test_manifest_rows_describe_the_copied_files(source: Path, tmp_path: Path, people: list[str]) -> None:
    built = build_dataset(source, tmp_path / "data")
    rows = read_manifest(tmp_path / "data")
    assert len(rows) == len(people) * PER_PERSON == len(built.rows)
    assert {r.identity for r in rows} == set(people)
    for row in rows:
        data = (tmp_path / "data" / row.path).read_bytes()
        assert row.sha256 == hashlib.sha256(data).hexdigest()
        with Image.open(source / row.path) as image:
            assert (row.width, row.height, row.format) == (*image.size, image.format)
        assert data == (source / row.path).read_bytes()  # LFW names are already safe: same relative path
    assert (tmp_path / "data" / "import.json").is_file()


def test_splits_are_deterministic_and_separate_identities(source: Path, tmp_path: Path) -> None:
    first = build_dataset(source, tmp_path / "a").rows
    second = build_dataset(source, tmp_path / "b").rows
    assert [(r.path, r.split) for r in first] == [(r.path, r.split) for r in second]
    test_ids = {r.identity for r in first if r.split == "test"}
    train_ids = {r.identity for r in first if r.split in ("train", "val")}
    assert test_ids and train_ids and not test_ids & train_ids
    for identity in train_ids:  # closed set: every training identity has images in train and in val
        splits = {r.split for r in first if r.identity == identity}
        assert splits == {"train", "val"}
    other_seed = build_dataset(source, tmp_path / "c", splits=SplitConfig(seed=7, test_fraction=0.5)).rows
    assert [r.split for r in other_seed] != [r.split for r in first]


def test_identity_split_is_stable_when_identities_are_added() -> None:
    base = {f"person_{i}": [f"person_{i}/{j}.jpg" for j in range(4)] for i in range(40)}
    grown = {**base, **{f"new_{i}": [f"new_{i}/{j}.jpg" for j in range(4)] for i in range(40)}}
    before, after = assign_splits(base), assign_splits(grown)
    held_out = {p.split("/")[0] for p, s in before.items() if s == "test"}
    assert held_out == {p.split("/")[0] for p, s in after.items() if s == "test" and p.startswith("person_")}
    assert 0 < len(held_out) < 40


def test_filters(source: Path, tmp_path: Path, people: list[str]) -> None:
    built = build_dataset(
        source, tmp_path / "a", ImportFilters(max_images=2, identities=(people[0], people[1], "Nobody_Here"))
    )
    assert {r.identity for r in built.rows} == {people[0], people[1]}
    assert len(built.rows) == 4
    assert [p.kind for p in built.problems] == ["unknown_identity"]
    with pytest.raises(DatasetError, match="no identity with at least 6"):
        build_dataset(source, tmp_path / "b", ImportFilters(min_images=PER_PERSON + 1))
    assert not (tmp_path / "b").exists()


def test_bad_source_is_reported_and_skipped(bad_source: Path, tmp_path: Path) -> None:
    built = build_dataset(bad_source, tmp_path / "data")
    found = {(p.kind, Path(p.path).name) for p in built.problems}
    assert ("corrupt_image", "broken.jpg") in found
    assert ("corrupt_image", "empty.jpg") in found
    assert ("empty_identity", "Empty_Person") in found
    assert ("stray_file", "README.md") in found
    assert ("stray_file", "notes.txt") in found
    assert ("stray_folder", "nested") in found
    assert ("renamed", "Jane Doe") in found
    clash = [p for p in built.problems if p.kind == "name_clash"]
    assert len(clash) == 1 and "Jose_Perez" in clash[0].message
    identities = {r.identity for r in built.rows}
    assert {"Jane_Doe", "Jose_Perez"} <= identities and "Jane Doe" not in identities
    assert not any("broken" in r.path or "empty" in r.path or "nested" in r.path for r in built.rows)
    assert all(r.path.isascii() and " " not in r.path for r in built.rows)


def test_strict_import_refuses_bad_source_and_writes_nothing(bad_source: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        build_dataset(bad_source, tmp_path / "data", strict=True)
    assert "broken.jpg" in str(info.value) and "empty.jpg" in str(info.value)
    assert not (tmp_path / "data").exists()


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        build_dataset(tmp_path / "nope", tmp_path / "data")


@pytest.mark.parametrize(
    ("name", "safe"),
    [("José Pérez", "Jose_Perez"), ("Ana  María", "Ana_Maria"), ("O'Brien", "O_Brien"), ("李", "")],
)
def test_safe_name(name: str, safe: str) -> None:
    assert safe_name(name) == safe


def test_sklearn_download_offline_gives_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A closed local proxy stands for "no network" even on machines that have one: nothing is downloaded.
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(DatasetError, match="needs the network"):
        fetch_lfw_sklearn(tmp_path / "sk")
