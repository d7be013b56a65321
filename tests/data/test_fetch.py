"""A data version by reference: fetched from the DVC remote by content hash into a step's scratch cache, checked,
the data-version step in a fresh repository, and the shard selection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from faceops.data.fetch import checkout_version, object_name
from faceops.data.importer import import_dataset
from faceops.data.ingest import ImportFilters
from faceops.data.manifest import read_manifest
from faceops.data.versioning import pointer_path
from faceops.errors import ConfigError, RemoteUnavailable, VersioningError

pytestmark = pytest.mark.integration  # DVC runs


@pytest.fixture
def pushed(source: Path, repo: Path, tmp_path: Path) -> tuple[str, Path]:
    """A data version imported into ``repo`` and pushed to a folder remote given by its URL."""
    from faceops.data.remotes import push

    remote = tmp_path / "remote"
    import_dataset(source, repo, ImportFilters(max_images=3))
    push(repo, str(remote))
    return pointer_path(repo).read_text(), remote


def test_a_version_is_fetched_by_hash_checked_and_reused(pushed: tuple[str, Path], repo: Path, tmp_path: Path) -> None:
    pointer, remote = pushed
    data = checkout_version(pointer, str(remote), tmp_path / "scratch")
    theirs = sorted(p.relative_to(repo / "data") for p in (repo / "data").rglob("*") if p.is_file())
    assert sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file()) == theirs
    assert all((data / p).read_bytes() == (repo / "data" / p).read_bytes() for p in theirs)
    assert (data.parent / "data.dvc").read_text() == pointer  # where the training run looks for the version
    # a second step on the same scratch fetches nothing: the remote may be gone
    shutil.rmtree(remote)
    assert checkout_version(pointer, str(remote), tmp_path / "scratch") == data


def test_a_damaged_object_is_refused(pushed: tuple[str, Path], tmp_path: Path) -> None:
    pointer, remote = pushed
    listing = next(remote.rglob("*.dir"))
    first = json.loads(listing.read_text())[0]
    damaged = remote / object_name(first["md5"])
    damaged.chmod(0o644)
    damaged.write_bytes(b"not the image")
    with pytest.raises(VersioningError, match=f"object {first['md5']} holds content with md5"):
        checkout_version(pointer, str(remote), tmp_path / "scratch")
    assert not list((tmp_path / "scratch").rglob(Path(first["relpath"]).name))


def test_a_version_missing_from_the_remote_says_so(pushed: tuple[str, Path], tmp_path: Path) -> None:
    pointer, _ = pushed
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RemoteUnavailable, match="was the version pushed"):
        checkout_version(pointer, str(empty), tmp_path / "scratch")


def test_a_shard_fetches_only_its_images(pushed: tuple[str, Path], tmp_path: Path) -> None:
    from faceops.steps.data import shard_of

    pointer, remote = pushed
    data = checkout_version(pointer, str(remote), tmp_path / "scratch", lambda rows: [r for r in rows if shard_of(r.sha256, 2) == 0])
    wanted = {r.path for r in read_manifest(data) if shard_of(r.sha256, 2) == 0}
    got = {p.relative_to(data).as_posix() for p in data.rglob("*.jpg")}
    assert got == wanted and 0 < len(got) < len(read_manifest(data))


def test_the_data_version_step_works_in_a_fresh_repository(source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod: no repository, an empty HOME (no git identity), the remote from FACEOPS_DVC_REMOTE."""
    from faceops.settings import get_settings
    from faceops.steps.context import DataRef, data_version_step

    home = tmp_path / "home"
    home.mkdir()
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("FACEOPS_CACHE_DIR", str(tmp_path / "scratch"))
    monkeypatch.delenv("FACEOPS_DVC_REMOTE", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="FACEOPS_DVC_REMOTE"):
            data_version_step("", str(source), "", "", 1, "", tmp_path / "none")
        monkeypatch.setenv("FACEOPS_DVC_REMOTE", str(tmp_path / "remote"))
        info = data_version_step("", str(source), "", "", 1, "", tmp_path / "artifact")
    finally:
        get_settings.cache_clear()
    assert info["images"] == 25 and info["remote_url"] == str(tmp_path / "remote")
    assert not list((tmp_path / "scratch").glob("repo-*"))  # the throw-away repository is gone
    ref = DataRef.from_artifact(tmp_path / "artifact")
    data = ref.checkout(tmp_path / "other-step")
    assert len(read_manifest(data)) == 25 and len(list(data.rglob("*.jpg"))) == 25
