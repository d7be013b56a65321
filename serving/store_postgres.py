"""The gallery's store in PostgreSQL, shared by service replicas.

Tables (created on first use, by one replica at a time)::

    gallery_identities(name PK)                          the unique name settles two replicas enrolling one name
    gallery_photos(source PK, identity FK, data BYTEA)   data is NULL when enrolment photos are not kept
    gallery_embeddings(model_id, source) PK, identity FK, vector BYTEA (float32; NULL: no face with this model)
    gallery_changes(seq PK, identity)                    one row per enrolment or deletion (a deletion's
                                                         row says DELETED, not the name)
    gallery_head(seq)                                    one row: the last change's seq

Deleting an identity cascades to its photos and embeddings. Every enrolment and deletion ends its transaction by
bumping ``gallery_head`` (its row lock orders the commits, so the change seqs become visible in order, none
skipped) and writing a ``gallery_changes`` row: a replica follows the others by reading the changes after its
cursor and reloading those identities. A deletion also removes the identity's earlier change rows and writes
:data:`~faceops.serving.store.DELETED` instead of its name, so nothing in the database names the person once
deleted; a replica that reads it drops what its gallery has and the store no longer has. Any connection failure
is :class:`StoreUnavailable` naming the database; the next call reconnects.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Iterator

import numpy as np
import psycopg
from faceops.serving.store import DELETED, GalleryStore, IdentityExists, StoredPhoto, StoreUnavailable

from faceops.errors import UnknownIdentity
from faceops.face.gallery import Gallery
from faceops.telemetry.postgres import Connections, DatabaseUnavailable

__all__ = ["PostgresStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gallery_identities (name TEXT PRIMARY KEY, created DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS gallery_photos (
    source TEXT PRIMARY KEY, identity TEXT NOT NULL REFERENCES gallery_identities(name) ON DELETE CASCADE,
    data BYTEA, added DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS gallery_photos_identity ON gallery_photos(identity);
CREATE TABLE IF NOT EXISTS gallery_embeddings (
    model_id TEXT NOT NULL, source TEXT NOT NULL REFERENCES gallery_photos(source) ON DELETE CASCADE,
    identity TEXT NOT NULL REFERENCES gallery_identities(name) ON DELETE CASCADE, vector BYTEA,
    PRIMARY KEY (model_id, source));
CREATE INDEX IF NOT EXISTS gallery_embeddings_identity ON gallery_embeddings(model_id, identity);
CREATE TABLE IF NOT EXISTS gallery_changes (
    seq BIGINT PRIMARY KEY, identity TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS gallery_head (one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one), seq BIGINT NOT NULL);
INSERT INTO gallery_head VALUES (TRUE, 0) ON CONFLICT DO NOTHING;
"""
_SCHEMA_LOCK = 0x47414C4C  # pg_advisory_xact_lock key for creating the tables
_MISSING = """
SELECT p.source, p.identity, p.data FROM gallery_photos p
WHERE p.data IS NOT NULL {only}
  AND NOT EXISTS (SELECT 1 FROM gallery_embeddings e WHERE e.model_id = %s AND e.source = p.source)
ORDER BY md5(p.source || %s) LIMIT %s
"""


def _one(row: tuple | None) -> tuple:
    """The row a statement that always returns one (an aggregate, ``RETURNING``) returned."""
    assert row is not None
    return row


def _vector(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.float32)


class PostgresStore(GalleryStore):
    """Identities, photos and per-model embeddings in PostgreSQL (see the module docstring)."""

    shared = True

    def __init__(self, url: str, connections: Connections | None = None) -> None:
        self.db = connections or Connections(url, size=6)
        self.description = f"PostgreSQL {self.db.name}"
        self._salt = uuid.uuid4().hex  # replicas rebuilding the same model start on different photos
        self._schema_ok = False

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection]:
        """A pooled connection, the tables created once; a lost server becomes :class:`StoreUnavailable`."""
        try:
            with self.db.connection() as conn:
                if not self._schema_ok:
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                        conn.execute(_SCHEMA)
                    self._schema_ok = True
                yield conn
        except DatabaseUnavailable as exc:
            raise StoreUnavailable(str(exc)) from exc

    # -- reading -----------------------------------------------------------------------------------------------
    def gallery(self, model_id: str) -> Gallery:
        gallery = Gallery(model_id)
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT identity, source, vector FROM gallery_embeddings WHERE model_id = %s "
                "AND vector IS NOT NULL ORDER BY identity, source",
                (model_id,),
            ).fetchall()
        _add_rows(gallery, rows)
        return gallery

    def identity(self, model_id: str, identity: str) -> tuple[np.ndarray, list[str]]:
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT source, vector FROM gallery_embeddings WHERE model_id = %s AND identity = %s "
                "AND vector IS NOT NULL ORDER BY source",
                (model_id, identity),
            ).fetchall()
        if not rows:
            return np.zeros((0, 0), np.float32), []
        return np.stack([_vector(v) for _, v in rows]), [s for s, _ in rows]

    def missing(self, model_id: str, limit: int, identities: set[str] | None = None) -> list[StoredPhoto]:
        only = "AND p.identity = ANY(%s)" if identities is not None else ""
        params = ([sorted(identities)] if identities is not None else []) + [model_id, self._salt, limit]
        with self._conn() as conn:
            rows = conn.execute(_MISSING.format(only=only), params).fetchall()
        return [StoredPhoto(s, i, bytes(d)) for s, i, d in rows]

    def count_missing(self, model_id: str) -> tuple[int, int]:
        with self._conn() as conn:
            missing, total = _one(
                conn.execute(
                    "SELECT COUNT(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM gallery_embeddings e "
                    "WHERE e.model_id = %s AND e.source = p.source)), COUNT(*) FROM gallery_photos p "
                    "WHERE p.data IS NOT NULL",
                    (model_id,),
                ).fetchone()
            )
        return int(missing), int(total)

    def head(self) -> int:
        with self._conn() as conn:
            return int(_one(conn.execute("SELECT seq FROM gallery_head").fetchone())[0])

    def changes(self, cursor: int) -> tuple[int, set[str]]:
        with self._conn() as conn:
            rows = conn.execute("SELECT seq, identity FROM gallery_changes WHERE seq > %s ORDER BY seq", (cursor,)).fetchall()
        return (int(rows[-1][0]) if rows else cursor), {r[1] for r in rows}

    # -- writing -----------------------------------------------------------------------------------------------
    def put_embeddings(self, model_id: str, results: list[tuple[StoredPhoto, np.ndarray | None]]) -> None:
        rows = [(model_id, p.identity, None if v is None else np.asarray(v, np.float32).tobytes(), p.source) for p, v in results]
        with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(  # a photo deleted meanwhile is skipped (no row to join)
                "INSERT INTO gallery_embeddings (model_id, source, identity, vector) "
                "SELECT %s, p.source, p.identity, %s FROM gallery_photos p WHERE p.source = %s "
                "ON CONFLICT DO NOTHING",
                [(m, v, s) for m, _, v, s in rows],
            )

    def enroll(self, identity: str, *, new: bool, model_id: str, photos: list[bytes], embeddings: np.ndarray, keep: bool) -> list[str]:
        now = time.time()
        sources = [f"{identity}/{hashlib.sha256(d).hexdigest()[:24]}" for d in photos]
        vectors = np.asarray(embeddings, dtype=np.float32)
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            if new:
                cur.execute("INSERT INTO gallery_identities VALUES (%s, %s) ON CONFLICT DO NOTHING", (identity, now))
                if cur.rowcount == 0:  # the unique name: another request or replica enrolled it first
                    raise IdentityExists(f"identity {identity!r} is already enrolled: add images to it instead")
            elif cur.execute("SELECT 1 FROM gallery_identities WHERE name = %s FOR SHARE", (identity,)).fetchone() is None:
                raise UnknownIdentity(f"identity {identity!r} is not enrolled")
            cur.executemany(
                "INSERT INTO gallery_photos VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(s, identity, d if keep else None, now) for s, d in zip(sources, photos, strict=True)],
            )
            cur.executemany(
                "INSERT INTO gallery_embeddings VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(model_id, s, identity, v.tobytes()) for s, v in zip(sources, vectors, strict=True)],
            )
            _changed(cur, identity, now)
        return sources

    def has(self, identity: str) -> bool:
        with self._conn() as conn:
            return conn.execute("SELECT 1 FROM gallery_identities WHERE name = %s", (identity,)).fetchone() is not None

    def names(self) -> set[str]:
        with self._conn() as conn:
            return {r[0] for r in conn.execute("SELECT name FROM gallery_identities").fetchall()}

    def delete(self, identity: str) -> dict[str, int]:
        with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            embeddings, photos = _one(
                cur.execute(
                    "SELECT (SELECT COUNT(*) FROM gallery_embeddings WHERE identity = %s AND vector IS NOT NULL), "
                    "(SELECT COUNT(*) FROM gallery_photos WHERE identity = %s AND data IS NOT NULL)",
                    (identity, identity),
                ).fetchone()
            )
            cur.execute("DELETE FROM gallery_identities WHERE name = %s", (identity,))
            if cur.rowcount == 0:
                raise UnknownIdentity(f"identity {identity!r} is not enrolled")
            cur.execute("DELETE FROM gallery_changes WHERE identity = %s", (identity,))
            _changed(cur, DELETED, time.time())
        return {"embeddings": int(embeddings), "photos": int(photos)}

    def close(self) -> None:
        self.db.close()


def _changed(cur: psycopg.Cursor, identity: str, now: float) -> None:
    """Bump the head (its row lock holds other writers until this commits: seqs commit in order) and log it."""
    seq = _one(cur.execute("UPDATE gallery_head SET seq = seq + 1 RETURNING seq").fetchone())[0]
    cur.execute("INSERT INTO gallery_changes VALUES (%s, %s, %s)", (seq, identity, now))


def _add_rows(gallery: Gallery, rows: list[tuple]) -> None:
    """Add ``(identity, source, vector)`` rows in one batch (one index insertion for a whole gallery)."""
    if rows:
        gallery.add_batch([r[0] for r in rows], np.stack([_vector(r[2]) for r in rows]), [r[1] for r in rows])
