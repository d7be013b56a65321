"""A real PostgreSQL server for the tests: Debian's binaries, a temporary cluster on 127.0.0.1, a free port.

PostgreSQL refuses to run as root: when the tests run as root, the cluster belongs to the ``postgres`` system user
(the Debian package creates it) and its commands run through ``runuser``. Connections use ``trust`` on 127.0.0.1
only; fsync is off (the tests check what the service acknowledges, not the disk).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PgServer", "find_bin_dir"]


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server's ``bin`` folder, or ``None``."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


class PgServer:
    """One cluster in ``root``; :meth:`start` / :meth:`stop` may be called again (fault tests)."""

    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin_dir, self.root, self.port = bin_dir, root, port
        self.data = root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "faceops", "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self._as, str(self.bin_dir / tool), *args], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -F -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://faceops@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database's URL (one per test: no test sees another's rows)."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextmanager
def running_server() -> Iterator[PgServer]:
    """A started server on a free loopback port, stopped and removed afterwards; skips the test without the
    Debian package."""
    import pytest

    from tests.serving.serving_helpers import free_port

    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin: Debian package postgresql)")
    # Not under pytest's temporary folder: that one is private to root, and the server may run as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix="faceops-pg-"))
    try:
        server = PgServer(bin_dir, root, free_port())
        server.start()
        yield server
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
