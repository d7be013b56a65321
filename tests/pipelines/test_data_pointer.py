"""The one reader of ``data.dvc`` (working tree or commit) and the data-version step's view of it: no DVC run,
the pointer files are written as DVC writes them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from faceops.data.versioning import list_versions, pointer_path, read_pointer
from faceops.errors import DatasetError, VersioningError
from faceops.steps.data import data_version_info


def _pointer(md5: str, images: int) -> str:
    out = {"md5": f"{md5}.dir", "size": 1234, "nfiles": images + 1, "hash": "md5", "path": "data"}
    meta = {"images": images, "identities": 2, "splits": {"train": images}, "source": "/people"}
    return yaml.safe_dump({"outs": [out], "meta": meta}, sort_keys=False)


def _commit(repo: Path, text: str, message: str) -> str:
    pointer_path(repo).write_text(text)
    subprocess.run(["git", "add", "data.dvc"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", message], cwd=repo, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@example.org"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=root, check=True)
    (root / "README").write_text("x")
    subprocess.run(["git", "add", "README"], cwd=root, check=True)
    subprocess.run(["git", "commit", "-qm", "start"], cwd=root, check=True)
    return root


def test_the_pointer_is_read_from_the_working_tree_and_from_commits(repo: Path) -> None:
    assert read_pointer(repo) is None
    with pytest.raises(DatasetError, match="no data version"):
        data_version_info(repo)

    first = _commit(repo, _pointer("aa11", 4), "data v1")
    second = _commit(repo, _pointer("bb22", 6), "data v2")
    now = read_pointer(repo)
    assert now is not None and (now.md5, now.files, now.size, now.images) == ("bb22.dir", 7, 1234, 6)
    old = read_pointer(repo, first)
    assert old is not None and old.md5 == "aa11.dir" and old.splits == {"train": 4}
    assert read_pointer(repo, "HEAD~2") is None  # a commit before any data version
    with pytest.raises(VersioningError):
        read_pointer(repo, "no-such-revision")
    assert [(v.rev, v.md5, v.images, v.files) for v in list_versions(repo)] == [
        (second, "bb22.dir", 6, 7),
        (first, "aa11.dir", 4, 5),
    ]

    info = data_version_info(repo)
    assert (info["rev"], info["md5"], info["images"], info["source"]) == (second, "bb22.dir", 6, "/people")
    pointer_path(repo).write_text(_pointer("cc33", 8))  # e.g. after 'faceops data restore'
    assert data_version_info(repo)["rev"] == "uncommitted"

    pointer_path(repo).write_text("just: text\n")
    with pytest.raises(VersioningError, match="not a DVC pointer"):
        read_pointer(repo)
