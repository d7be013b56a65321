"""PostgreSQL for state that several service replicas share: URLs, a small connection pool, one error.

Only the request log (:mod:`faceops.telemetry.requestlog_postgres`) and the service's gallery store use it. A
failure to reach the server (refused, reset, shut down, timed out) becomes :class:`DatabaseUnavailable`, which
names the database without its password; the broken connection is dropped, so the next call reconnects and the
caller recovers by itself when the server is back. Other database errors (constraints, SQL) pass unchanged.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from faceops.errors import FaceOpsError

__all__ = ["Connections", "DatabaseUnavailable", "database_url", "is_database_url", "redacted", "to_pg"]

_SCHEMES = ("postgresql:", "postgres:")


class DatabaseUnavailable(FaceOpsError):
    """The PostgreSQL server cannot be reached (or went away during a statement).

    Attributes:
        database: the database's URL without password.
    """

    def __init__(self, database: str, problem: str) -> None:
        super().__init__(f"the database {database} is unavailable: {problem}")
        self.database = database


def is_database_url(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than a file."""
    return str(target).startswith(_SCHEMES)


def database_url(target: str | Path) -> str:
    """The URL of ``target``, repaired if it went through :class:`~pathlib.Path` (which folds ``//`` to ``/``)."""
    text = str(target)
    scheme, _, rest = text.partition(":")
    return f"{scheme}://{rest.lstrip('/')}" if not rest.startswith("//") else text


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return url.split("@")[-1]
    user, host = params.get("user", ""), params.get("host", "")
    port, name = params.get("port", ""), params.get("dbname", "")
    return f"postgresql://{user}{'@' if user else ''}{host}{':' if port else ''}{port}/{name}"


def to_pg(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s`` (outside quoted strings; a literal ``%`` doubled)."""
    out, quoted = [], False
    for char in sql:
        if char == "'":
            quoted = not quoted
        out.append("%s" if char == "?" and not quoted else "%%" if char == "%" else char)
    return "".join(out)


class Connections:
    """A few autocommit connections to one database, shared by threads; reconnects after a failure.

    Args:
        url: a ``postgresql://`` URL (libpq's key=value form works too).
        size: connections kept open at most (more are opened when needed and closed after use).
        connect_timeout: seconds to wait for the server when connecting.
        statement_timeout_s: a statement running longer is cancelled (a hung server never hangs a request).
    """

    def __init__(self, url: str, size: int = 4, connect_timeout: float = 3.0, statement_timeout_s: float = 30.0):
        self.url = database_url(url)
        self.name = redacted(self.url)
        self._conninfo = make_conninfo(
            self.url,
            connect_timeout=max(1, round(connect_timeout)),
            options=f"-c statement_timeout={int(statement_timeout_s * 1000)}",
            application_name="faceops",
        )
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue(maxsize=size)
        self._closed = threading.Event()

    def unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DatabaseUnavailable(self.name, first)

    def connect(self, autocommit: bool = True) -> psycopg.Connection:
        """A new connection of one's own (the caller closes it); :class:`DatabaseUnavailable` when it fails."""
        try:
            return psycopg.connect(self._conninfo, autocommit=autocommit)
        except psycopg.OperationalError as exc:
            raise self.unavailable(exc) from exc

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection (use ``with conn.transaction():`` for several statements at once)."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self.connect()
        try:
            yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            conn.close()  # broken or suspect: never reused, nor the idle ones (a restarted server dropped them)
            self._drain()
            raise self.unavailable(exc) from exc
        except BaseException:
            self._give_back(conn)
            raise
        self._give_back(conn)

    def _give_back(self, conn: psycopg.Connection) -> None:
        if conn.closed or conn.broken or self._closed.is_set() or conn.info.transaction_status != 0:  # 0: IDLE
            conn.close()
            return
        try:
            self._idle.put_nowait(conn)
        except queue.Full:
            conn.close()

    def close(self) -> None:
        self._closed.set()
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
