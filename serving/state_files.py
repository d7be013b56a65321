"""State files that heal: a damaged gallery or request log is moved aside (kept) instead of stopping the service.

The service's state is two files in ``state_dir``: ``gallery.npz`` and ``requests.sqlite``. If either cannot be
read at start (truncated by a full disk, overwritten, an empty file, foreign arrays, a malformed database), the
process must not exit: under a supervisor that is a crash loop. Instead the file is renamed to
``<name>.damaged-<UTC time>`` (never deleted: it may still be rescued by hand), a warning is logged, and the
service goes on with a rebuilt gallery (from the stored enrolment photos) or a new, empty request log. Every
repair is recorded as a :class:`Repair`, which ``/ready`` reports under ``alerts`` so monitoring can page.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from faceops.telemetry.requestlog import RequestLog

__all__ = ["Repair", "move_aside", "open_request_log", "state_lock"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Repair:
    """One damaged state file that was moved aside, and what the service did instead."""

    file: str
    moved_to: str | None
    problem: str
    action: str
    at: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``state_dir`` across processes (uvicorn workers check and heal one at a time)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".state.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def move_aside(path: Path, companions: tuple[str, ...] = ()) -> Path | None:
    """Rename ``path`` (and ``path + suffix`` for each companion) to ``<name>.damaged-<time>``; the new path.

    ``None`` when the file was already gone (another worker moved it).
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    for suffix in companions:
        with contextlib.suppress(FileNotFoundError):
            os.replace(path.with_name(path.name + suffix), target.with_name(target.name + suffix))
    return target


def _log_problem(path: Path) -> str | None:
    """Why the SQLite file at ``path`` is unusable, or ``None`` if it is sound (or does not exist yet)."""
    if not path.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
            rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return f"{type(exc).__name__}: {exc}"
    problems = [str(r[0]) for r in rows if r[0] != "ok"]
    return "; ".join(problems[:3]) if problems else None


def open_request_log(
    path: Path,
    sample_rate: float,
    retention_days: float,
    store_images: bool,
    store_embeddings: bool,
) -> tuple[RequestLog, Repair | None]:
    """The request log at ``path``; a damaged one is moved aside and a new one started (with the repair).

    A log of another schema version is not damage: :class:`SchemaVersionMismatch` still stops the service.
    """

    def opened() -> RequestLog:
        return RequestLog(path, sample_rate, retention_days, store_images, store_embeddings)

    with state_lock(path.parent):
        problem = _log_problem(path)
        if problem is None:
            try:
                return opened(), None
            except sqlite3.DatabaseError as exc:
                problem = f"{type(exc).__name__}: {exc}"
        moved = move_aside(path, companions=("-wal", "-shm", "-journal"))
        repair = Repair(
            str(path),
            str(moved) if moved else None,
            problem,
            "started a new, empty request log; the rows of the damaged one are not in monitoring",
            time.time(),
        )
        log.warning("request log %s is damaged (%s): moved to %s, a new log started", path, problem, moved)
        return opened(), repair
