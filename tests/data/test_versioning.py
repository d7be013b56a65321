"""Data versions with DVC in throw-away git repositories: import, list, restore, failures that lose
nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from faceops.data.importer import import_dataset
from faceops.data.ingest import ImportFilters
from faceops.data.manifest import read_manifest
from faceops.data.remotes import pull, push, remote_status
from faceops.data.versioning import dvc, git, list_versions, restore_version, workspace_status
from faceops.errors import DatasetError, RemoteUnavailable, VersioningError
from faceops.settings import Settings


def _cache_files(repo: Path) -> set[Path]:
    cache = repo / ".dvc" / "cache"
    return {p.relative_to(cache) for p in cache.rglob("*") if p.is_file()}


def test_import_records_versions_that_can_be_restored(source: Path, repo: Path) -> None:
    first = import_dataset(source, repo, ImportFilters(max_images=3), message="v1")
    second = import_dataset(source, repo, ImportFilters(max_images=5))
    assert first.rev and second.rev and first.rev != second.rev
    assert git(repo, "status", "--porcelain").strip() == ""  # everything DVC set up is committed
    versions = list_versions(repo)
    assert [v.rev for v in versions] == [second.rev, first.rev]
    assert [v.images for v in versions] == [25, 15]
    assert versions[1].message == "v1" and versions[0].identities == 5
    assert sum(versions[0].splits.values()) == 25
    v1_pointer = git(repo, "show", f"{first.rev}:data.dvc")

    restore_version(repo, first.rev[:8])
    assert len(read_manifest(repo / "data")) == 15
    assert sum(1 for p in (repo / "data").rglob("*.jpg")) == 15
    assert yaml.safe_load((repo / "data.dvc").read_text()) == yaml.safe_load(v1_pointer)
    assert workspace_status(repo) == {}
    restore_version(repo, "HEAD")
    assert len(read_manifest(repo / "data")) == 25


def test_failed_import_loses_nothing(source: Path, repo: Path, tmp_path: Path) -> None:
    import_dataset(source, repo, ImportFilters(max_images=2))
    pointer = (repo / "data.dvc").read_bytes()
    manifest = (repo / "data" / "manifest.csv").read_bytes()
    cache = _cache_files(repo)
    empty = tmp_path / "empty_source"
    (empty / "Someone").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no identity"):
        import_dataset(empty, repo)
    assert (repo / "data.dvc").read_bytes() == pointer
    assert (repo / "data" / "manifest.csv").read_bytes() == manifest
    assert _cache_files(repo) >= cache
    assert workspace_status(repo) == {}
    assert len(list_versions(repo)) == 1
    assert not list((repo / ".dvc" / "tmp").glob("faceops-*"))  # no staging left behind


def test_unrecorded_changes_are_not_overwritten(source: Path, repo: Path) -> None:
    import_dataset(source, repo, ImportFilters(max_images=2))
    victim = next((repo / "data").rglob("*.jpg"))
    victim.write_bytes(b"edited by hand")
    with pytest.raises(VersioningError, match="changes that are not in any data version"):
        import_dataset(source, repo, ImportFilters(max_images=3))
    assert victim.read_bytes() == b"edited by hand"
    with pytest.raises(VersioningError, match="not in any data version"):
        restore_version(repo, "HEAD")
    import_dataset(source, repo, ImportFilters(max_images=3), force=True)
    assert len(read_manifest(repo / "data")) == 15


def test_bad_revisions_and_repositories(source: Path, repo: Path, tmp_path: Path) -> None:
    import_dataset(source, repo, ImportFilters(max_images=1))
    with pytest.raises(VersioningError, match="unknown revision"):
        restore_version(repo, "no-such-rev")
    with pytest.raises(VersioningError, match="not a data version"):
        restore_version(repo, "HEAD~1")  # the initial commit has no data.dvc
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(VersioningError, match="not a git repository"):
        import_dataset(source, plain)


def test_local_remote_round_trip(source: Path, repo: Path, tmp_path: Path) -> None:
    settings = Settings(dvc_local_remote=tmp_path / "storage")
    import_dataset(source, repo, ImportFilters(max_images=2))
    assert remote_status(repo, "local", settings)  # nothing pushed yet
    push(repo, "local", settings)
    assert remote_status(repo, "local", settings) == {}
    stored = {p for p in (tmp_path / "storage").rglob("*") if p.is_file()}
    assert stored
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data")
    pull(repo, "local", settings)
    assert len(read_manifest(repo / "data")) == 10
    assert workspace_status(repo) == {}
    # an unreachable local remote (a path that is a file) fails clearly and the storage keeps its objects
    blocked = Settings(dvc_local_remote=tmp_path / "storage" / "blocked")
    (tmp_path / "storage" / "blocked").write_text("not a folder")
    with pytest.raises(RemoteUnavailable, match="cannot be used as a folder"):
        push(repo, "local", blocked)
    assert {p for p in (tmp_path / "storage").rglob("*") if p.is_file()} >= stored
    dvc(repo, "status")  # the repository is still usable


def test_cli_import_versions_restore_push(
    bad_source: Path, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from faceops.cli import cli

    monkeypatch.setenv("FACEOPS_DVC_LOCAL_REMOTE", str(tmp_path / "storage"))
    from faceops.settings import get_settings

    get_settings.cache_clear()
    runner = CliRunner()
    root = ["--root", str(repo)]
    result = runner.invoke(cli, ["data", "import", str(bad_source), *root, "-m", "small"])
    assert result.exit_code == 0, result.output
    assert "broken.jpg" in result.output and "Empty_Person" in result.output and "README.md" in result.output
    result = runner.invoke(cli, ["data", "import", str(bad_source), *root, "--min-images", "4", "--strict"])
    assert result.exit_code == 1 and "strict import refused" in result.output
    result = runner.invoke(cli, ["data", "import", str(bad_source), *root, "--min-images", "4", "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["data", "versions", *root, "--json"])
    listed = json.loads(result.output)
    assert [v["message"] for v in listed][1] == "small" and listed[0]["identities"] == 5
    result = runner.invoke(cli, ["data", "restore", listed[1]["rev"][:8], *root])
    assert result.exit_code == 0, result.output
    assert {r.identity for r in read_manifest(repo / "data")} >= {"Jane_Doe", "Jose_Perez"}
    assert runner.invoke(cli, ["data", "push", *root]).exit_code == 0
    result = runner.invoke(cli, ["data", "status", *root, "--json"])
    assert result.exit_code == 0 and json.loads(result.output) == {}
    result = runner.invoke(cli, ["data", "import", *root])
    assert result.exit_code == 2 and "SRC or --sklearn-lfw" in result.output
    get_settings.cache_clear()
