"""Open the service's state, embedded or shared: the gallery's store and the request log, chosen by one setting.

Without ``database_url``: the files in ``state_dir`` (:class:`~faceops.serving.store.EmbeddedStore` and the
SQLite request log, healed by :mod:`faceops.serving.state_files` when damaged). With it: both in that PostgreSQL
database (:class:`~faceops.serving.store_postgres.PostgresStore` and
:class:`~faceops.telemetry.requestlog_postgres.PostgresRequestLog`), which every replica shares. Nothing here
needs the database to be up: the service starts, answers 503 naming it, and recovers when it is back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from faceops.serving.config import ServingSettings
from faceops.serving.state_files import Repair, open_request_log
from faceops.serving.store import EmbeddedStore, GalleryStore, StoreUnavailable

from faceops.telemetry.erasure import DeletionRecord, Likeness
from faceops.telemetry.postgres import DatabaseUnavailable
from faceops.telemetry.requestlog import RequestLogWriter, RequestRecord

__all__ = ["GuardedLog", "open_state"]


def open_state(settings: ServingSettings) -> tuple[GalleryStore, RequestLogWriter, Repair | None]:
    """The store, the request log and the repair of a damaged log file (embedded only) for ``settings``."""
    if settings.database_url is None:
        log, repaired = open_request_log(
            settings.log_path,
            settings.log_sample_rate,
            settings.log_retention_days,
            settings.log_store_images,
            settings.log_embeddings,
        )
        return EmbeddedStore(settings.state_dir, settings.keep_enrollment_images), log, repaired
    from faceops.serving.store_postgres import PostgresStore

    from faceops.telemetry.postgres import Connections
    from faceops.telemetry.requestlog_postgres import PostgresRequestLog

    connections = Connections(settings.database_url, size=8)  # one pool: the store and the log share it
    writer = PostgresRequestLog(
        settings.database_url,
        settings.log_sample_rate,
        settings.log_retention_days,
        settings.log_store_images,
        settings.log_embeddings,
        connections=connections,
    )
    return PostgresStore(settings.database_url, connections=connections), GuardedLog(writer), None


@contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except DatabaseUnavailable as exc:
        raise StoreUnavailable(str(exc)) from exc


class GuardedLog:
    """A request log whose lost database is the service's 503 (:class:`StoreUnavailable`), never a 500."""

    def __init__(self, log: RequestLogWriter) -> None:
        self.inner = log
        self.store_images = log.store_images

    def sampled(self) -> bool:
        return self.inner.sampled()

    def append(self, record: RequestRecord) -> None:
        with _mapped():
            self.inner.append(record)

    def add_feedback(self, request_id: str, truth: str, face_index: int = 0) -> None:
        with _mapped():
            self.inner.add_feedback(request_id, truth, face_index)

    def prune(self, now: float | None = None) -> int:
        with _mapped():
            return self.inner.prune(now)

    def forget(self, identity: str, likeness: Likeness | None = None) -> dict[str, int]:
        with _mapped():
            return self.inner.forget(identity, likeness)

    def record_deletion(self, record: DeletionRecord) -> None:
        with _mapped():
            self.inner.record_deletion(record)

    def deletions(self) -> list[DeletionRecord]:
        with _mapped():
            return self.inner.deletions()

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with _mapped():
            return self.inner.query(sql, params)

    def close(self) -> None:
        self.inner.close()
