"""Fixtures of the data-layer tests: small real LFW source trees, a bad one, and throw-away git + DVC
repos."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

# Five LFW people with >= 10 photos; the tests copy a few photos of each.
PEOPLE = ["Abdullah_Gul", "Adrien_Brody", "Alejandro_Toledo", "Amelie_Mauresmo", "Andre_Agassi"]
PER_PERSON = 5


def copy_people(lfw: Path, dest: Path, people: list[str], per_person: int) -> Path:
    for person in people:
        (dest / person).mkdir(parents=True)
        for photo in sorted((lfw / person).iterdir())[:per_person]:
            shutil.copy(photo, dest / person / photo.name)
    return dest


@pytest.fixture(scope="session")
def people() -> list[str]:
    """The identities of :func:`source` (each with ``PER_PERSON`` photos)."""
    return list(PEOPLE)


@pytest.fixture
def source(tmp_path: Path, lfw: Path) -> Path:
    """A clean folder-per-identity tree: 5 LFW people x 5 photos."""
    return copy_people(lfw, tmp_path / "source", PEOPLE, PER_PERSON)


@pytest.fixture
def bad_source(source: Path, lfw: Path) -> Path:
    """The clean tree plus every kind of bad input an import must report."""
    first = sorted((source / PEOPLE[0]).iterdir())[0]
    (source / PEOPLE[0] / "broken.jpg").write_bytes(first.read_bytes()[:600])  # truncated JPEG
    (source / PEOPLE[1] / "empty.jpg").write_bytes(b"")
    (source / PEOPLE[1] / "notes.txt").write_text("not an image")
    (source / "Empty_Person").mkdir()
    (source / "README.md").write_text("a stray file at the identity level")
    (source / PEOPLE[2] / "nested").mkdir()
    shutil.copy(first, source / PEOPLE[2] / "nested" / "x.jpg")
    for name in ("Jane Doe", "José_Pérez", "Jose_Perez"):  # a space, non-ASCII letters, and a clash
        copy_people(lfw, source / "_tmp", ["Colin_Powell"], 3)
        (source / "_tmp" / "Colin_Powell").rename(source / name)
        (source / "_tmp").rmdir()
    return source


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty git repository with one commit (DVC is initialised by the code under test)."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "--quiet", "--initial-branch=main")
    _git(root, "config", "user.email", "tests@faceops.local")
    _git(root, "config", "user.name", "FaceOps tests")
    (root / ".gitignore").write_text("/.dvc-storage/\n")
    _git(root, "add", ".gitignore")
    _git(root, "commit", "--quiet", "-m", "init")
    return root
