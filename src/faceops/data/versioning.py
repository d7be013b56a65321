"""Data versions with DVC and git: record, list and restore versions of the data folder.

A *data version* is a git commit that changed ``data.dvc`` (the pointer file DVC writes for ``data/``). Its
``meta`` section carries the image and identity counts, so ``faceops data versions`` lists versions without
fetching any data; :func:`read_pointer` is the one reader of that file (in the working tree or in a commit).
Restoring checks ``data.dvc`` out of an old commit and lets DVC put the matching files in place, from the
local cache or, when they are not there, from a remote.

This module is the only place that runs ``git`` and ``dvc`` (DVC through its command line, run with this
Python so the venv's DVC is used); DVC's API churn stays here. Nothing here deletes anything from the DVC
cache or a remote, so a failed import, restore or push loses no version already stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faceops.errors import VersioningError

__all__ = [
    "DataPointer",
    "DataVersion",
    "dvc",
    "ensure_repo",
    "git",
    "list_versions",
    "pointer_path",
    "read_pointer",
    "record_version",
    "replace_data",
    "restore_version",
    "staging_dir",
    "workspace_status",
]

DATA_DIR = "data"


@dataclass(frozen=True)
class DataPointer:
    """What a DVC pointer file (``data.dvc``) says about its data version, read without fetching any data.

    Attributes:
        md5: DVC's hash of the folder (``outs[0].md5``): equal hashes mean equal data.
        files: how many files the folder holds (``nfiles``), when DVC recorded it.
        size: its size in bytes, when recorded.
        meta: what ``faceops data import`` recorded (``images``, ``identities``, ``splits``, ``source``,
            ``filters``); empty for a pointer written by DVC alone.
    """

    md5: str
    files: int | None = None
    size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> int | None:
        return self.meta.get("images")

    @property
    def identities(self) -> int | None:
        return self.meta.get("identities")

    @property
    def splits(self) -> dict[str, int] | None:
        return self.meta.get("splits")

    @classmethod
    def parse(cls, text: str, where: str) -> DataPointer:
        """The pointer from the YAML text of a ``.dvc`` file (``where`` names it in errors)."""
        try:
            content = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise VersioningError(f"{where}: not a DVC pointer file ({exc})") from exc
        outs = content.get("outs") if isinstance(content, dict) else None
        if not outs or not isinstance(outs[0], dict):
            raise VersioningError(f"{where}: not a DVC pointer file (no 'outs' entry)")
        out = outs[0]
        return cls(
            md5=str(out.get("md5") or ""),
            files=out.get("nfiles"),
            size=out.get("size"),
            meta=dict(content.get("meta") or {}),
        )


def pointer_path(root: str | Path, target: str = DATA_DIR) -> Path:
    """Where the pointer file of ``root/target`` is: ``root/<target>.dvc``."""
    return Path(root) / f"{target}.dvc"


def read_pointer(root: str | Path, rev: str | None = None, target: str = DATA_DIR) -> DataPointer | None:
    """The pointer of ``root/target`` (``data.dvc``): in the working tree, or as commit ``rev`` recorded it.

    Returns:
        None when there is no such file (no data version yet, or a commit that did not hold it).

    Raises:
        VersioningError: the file is not a DVC pointer; git failed for another reason than a missing file.
    """
    name = f"{target}.dvc"
    if rev is None:
        path = pointer_path(root, target)
        return DataPointer.parse(path.read_text(), str(path)) if path.is_file() else None
    root = Path(root)
    try:
        text = git(root, "show", f"{rev}:{name}")
    except VersioningError:
        try:
            git(root, "cat-file", "-e", f"{rev}^{{commit}}")
        except VersioningError:
            raise  # not a revision at all
        return None  # a revision without the file
    return DataPointer.parse(text, f"{rev}:{name}")


def _run(cmd: Sequence[str], root: Path, env: Mapping[str, str] | None, what: str) -> str:
    full_env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    try:
        done = subprocess.run(list(cmd), cwd=root, env=full_env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise VersioningError(f"{what}: cannot run {cmd[0]} ({exc})") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise VersioningError(f"{what} failed in {root}:\n{tail}")
    return done.stdout


def git(root: Path, *args: str) -> str:
    """Run git in ``root``; a failure raises :class:`VersioningError` with git's message."""
    if shutil.which("git") is None:
        raise VersioningError("git is not installed (data versions are git commits of data.dvc)")
    return _run(["git", *args], root, None, f"git {args[0]}")


def dvc(root: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run the DVC command line of this Python environment in ``root``."""
    return _run([sys.executable, "-m", "dvc", *args], root, env, f"dvc {args[0]}")


def ensure_repo(root: str | Path) -> Path:
    """Make sure ``root`` is a git repository with DVC initialised (``dvc init`` when it is not yet)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise VersioningError(f"{root}: no such folder")
    try:
        top = Path(git(root, "rev-parse", "--show-toplevel").strip()).resolve()
    except VersioningError as exc:
        raise VersioningError(
            f"{root} is not a git repository: run 'git init' there first "
            "(data versions are git commits of data.dvc)"
        ) from exc
    if top != root:
        raise VersioningError(f"{root} is inside the git repository {top}: pass its top folder as the root")
    if not (root / ".dvc").is_dir():
        dvc(root, "init", "--quiet")
        dvc(root, "config", "core.analytics", "false")
    return root


def staging_dir(root: Path) -> Path:
    """A fresh folder on the repository's file system (so moves are renames) that git and DVC ignore."""
    path = root / ".dvc" / "tmp" / f"faceops-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    return path


def workspace_status(root: Path, target: str = f"{DATA_DIR}.dvc") -> dict[str, Any]:
    """DVC's status of ``target``: empty when the workspace matches it."""
    if not (root / target).is_file():
        return {}
    out = dvc(root, "status", "--json", target)
    return json.loads(out or "{}")


def _check_clean(root: Path, force: bool) -> None:
    """Refuse to replace ``data/`` when it holds changes that no data version (and so no cache) has."""
    data = root / DATA_DIR
    if force or not data.exists():
        return
    if not (root / f"{DATA_DIR}.dvc").is_file():
        raise VersioningError(f"{data} exists but is not tracked by DVC: move it away or pass --force")
    status = workspace_status(root)
    if status:
        raise VersioningError(
            f"{data} has changes that are not in any data version ({json.dumps(status)}): "
            "record them with 'dvc add data' or pass --force to discard them"
        )


def replace_data(root: Path, new_data: Path, meta: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    """Swap ``new_data`` in as ``root/data``, hash it into the DVC cache and write ``data.dvc`` with ``meta``.

    On any failure the previous ``data/`` and ``data.dvc`` are put back.

    Returns:
        The ``data.dvc`` content, and ``gitignore_changed``: whether DVC added ``data`` to ``.gitignore``.
    """
    _check_clean(root, force)
    gitignore = root / ".gitignore"
    ignore_before = gitignore.read_bytes() if gitignore.is_file() else None
    data, pointer = root / DATA_DIR, root / f"{DATA_DIR}.dvc"
    backup = staging_dir(root)
    old_pointer = pointer.read_bytes() if pointer.is_file() else None
    had_data = data.exists()
    if had_data:
        data.rename(backup / DATA_DIR)
    try:
        new_data.rename(data)
        dvc(root, "add", "--quiet", DATA_DIR)
        content = yaml.safe_load(pointer.read_text())
        content["meta"] = meta
        pointer.write_text(yaml.safe_dump(content, sort_keys=False))
    except BaseException:
        if data.exists():
            shutil.rmtree(data)
        if had_data:
            (backup / DATA_DIR).rename(data)
        if old_pointer is None:
            pointer.unlink(missing_ok=True)
        else:
            pointer.write_bytes(old_pointer)
        raise
    finally:
        shutil.rmtree(backup, ignore_errors=True)
    ignore_after = gitignore.read_bytes() if gitignore.is_file() else None
    return {**content, "gitignore_changed": ignore_after != ignore_before}


def record_version(root: Path, message: str, also: Sequence[str] = ()) -> str:
    """Commit ``data.dvc`` and ``also`` alone, with DVC's set-up files when they are new; returns the hash.

    Other changes in the working tree (other people's work) are left out of the commit.
    """
    setup = (".dvcignore", ".dvc/config", ".dvc/.gitignore")
    paths = [f"{DATA_DIR}.dvc", *also] + [p for p in setup if _is_new(root, p)]
    git(root, "add", "--", *paths)
    git(root, *_identity(root), "commit", "--quiet", "--no-verify", "-m", message, "--", *paths)
    return git(root, "rev-parse", "HEAD").strip()


def _identity(root: Path) -> tuple[str, ...]:
    """A committer for a repository whose git knows none (a pipeline step in a fresh pod with an empty HOME)."""
    if os.environ.get("GIT_COMMITTER_EMAIL") or os.environ.get("EMAIL"):
        return ()
    try:
        git(root, "config", "user.email")
    except VersioningError:
        return ("-c", "user.name=FaceOps pipeline", "-c", "user.email=faceops@localhost")
    return ()


def _is_new(root: Path, path: str) -> bool:
    return git(root, "status", "--porcelain", "--", path)[:2] in ("??", "A ", "AM")


@dataclass(frozen=True)
class DataVersion:
    """One commit that changed ``data.dvc``."""

    rev: str
    date: str
    message: str
    md5: str | None
    images: int | None
    identities: int | None
    files: int | None
    size: int | None
    splits: dict[str, int] | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def list_versions(root: str | Path, limit: int | None = None) -> list[DataVersion]:
    """Data versions, newest first, read from git history (no data is fetched)."""
    root = Path(root).resolve()
    args = ["log", "--format=%H%x1f%aI%x1f%s", "--", f"{DATA_DIR}.dvc"]
    if limit:
        args.insert(1, f"-n{limit}")
    versions = []
    for line in git(root, *args).splitlines():
        rev, date, message = line.split("\x1f", 2)
        try:
            pointer = read_pointer(root, rev)
        except VersioningError:
            continue  # a commit whose data.dvc is not a DVC pointer: not a data version
        if pointer is None:
            continue  # the commit deleted data.dvc
        versions.append(
            DataVersion(
                rev,
                date,
                message,
                pointer.md5 or None,
                pointer.images,
                pointer.identities,
                pointer.files,
                pointer.size,
                pointer.splits,
            )
        )
    return versions


def resolve_rev(root: Path, rev: str) -> str:
    """The full hash of ``rev``; it must hold a ``data.dvc``."""
    try:
        full = git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    except VersioningError as exc:
        raise VersioningError(f"unknown revision {rev!r}: see 'faceops data versions'") from exc
    try:
        git(root, "cat-file", "-e", f"{full}:{DATA_DIR}.dvc")
    except VersioningError as exc:
        raise VersioningError(f"revision {rev} has no {DATA_DIR}.dvc: it is not a data version") from exc
    return full


def restore_version(
    root: str | Path,
    rev: str,
    *,
    remote: str | None = None,
    env: Mapping[str, str] | None = None,
    force: bool = False,
) -> str:
    """Put the data of version ``rev`` in ``data/`` (and its ``data.dvc`` in the working tree).

    Files come from the DVC cache; whatever the cache lacks is pulled from ``remote`` (or the default remote).
    On failure ``data.dvc`` is put back as it was.

    Returns:
        The full hash of the restored version.
    """
    root = Path(root).resolve()
    full = resolve_rev(root, rev)
    _check_clean(root, force)
    pointer = root / f"{DATA_DIR}.dvc"
    old_pointer = pointer.read_bytes() if pointer.is_file() else None
    pointer.write_text(git(root, "show", f"{full}:{DATA_DIR}.dvc"))
    try:
        try:
            dvc(root, "checkout", "--force", "--quiet", pointer.name)
        except VersioningError:
            # Some objects are not in the local cache: fetch them from the remote.
            dvc(
                root, "pull", "--force", "--quiet", *(["-r", remote] if remote else []), pointer.name, env=env
            )
    except VersioningError as exc:
        if old_pointer is not None:
            pointer.write_bytes(old_pointer)
            _best_effort_checkout(root, pointer.name)
        else:
            pointer.unlink(missing_ok=True)
        raise VersioningError(
            f"cannot restore data version {rev}: its files are neither in the DVC cache nor "
            f"reachable on the remote ({exc})"
        ) from exc
    return full


def _best_effort_checkout(root: Path, target: str) -> None:
    """Put the workspace back to ``target`` after a failed restore (its files are in the cache)."""
    with contextlib.suppress(VersioningError):  # the caller reports the original failure
        dvc(root, "checkout", "--force", "--quiet", target)
