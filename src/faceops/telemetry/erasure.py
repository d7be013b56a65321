"""Erasing one person from the request log, and the audit record every erasure leaves.

A person leaves the log with every request that names them or shows them: a face predicted as them or with them
as the top candidate, feedback that gives them as the truth, an error message that quotes their name, and, when
the log holds embeddings (``log_embeddings``) and the caller gives their gallery embeddings (:class:`Likeness`),
every face whose logged embedding matches one of theirs at the model's threshold (the faces of theirs the service
did not recognise: unknown or merely detected; a face recognised as someone else stays). The whole request
goes, with its stored image and all its faces: the image shows them. What cannot be found this way: an
unrecognised face of theirs in a log without embeddings.

The audit record (:class:`DeletionRecord`, table ``deletions`` of the request log's database, never pruned by the
log's retention) says who asked (the API key's name or the CLI user, never a key), when, and how many rows and
files each store lost. It holds no embedding, photo or other person's name, and not the deleted name itself: only
a salted SHA-256 of it (a random salt per record), which answers "was this name deleted?" for someone who knows
the name (:meth:`DeletionRecord.names`) without the audit table listing the people it erased.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from faceops.errors import UnknownIdentity
from faceops.face.gallery import UNKNOWN, Gallery

__all__ = [
    "DELETIONS_PG",
    "DELETIONS_SQLITE",
    "DeletionRecord",
    "Likeness",
    "Read",
    "chunks",
    "count_doomed",
    "doomed_requests",
    "likeness_of",
    "local_actor",
]

DELETIONS_SQLITE = """
CREATE TABLE IF NOT EXISTS deletions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, actor TEXT NOT NULL, salt TEXT NOT NULL,
    identity_hash TEXT NOT NULL, removed TEXT NOT NULL);
"""
DELETIONS_PG = """
CREATE TABLE IF NOT EXISTS deletions (
    id BIGSERIAL PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL, salt TEXT NOT NULL,
    identity_hash TEXT NOT NULL, removed TEXT NOT NULL);
"""
_CHUNK = 500  # ids per statement: under SQLite's limit on parameters
_PAGE = 5000  # logged embeddings compared per query

Read = Callable[[str, Sequence[object]], list[tuple]]  # SQL with ``?`` placeholders -> rows


@dataclass(frozen=True)
class Likeness:
    """A person's gallery embeddings by one model, to find their faces the log does not name."""

    model_id: str
    vectors: np.ndarray
    threshold: float


def likeness_of(gallery: Gallery, identity: str, threshold: float) -> Likeness:
    """``identity``'s embeddings in ``gallery`` (none if it has none there)."""
    try:
        vectors = gallery.embeddings_of(identity)
    except UnknownIdentity:
        vectors = np.zeros((0, gallery.dim), dtype=np.float32)
    return Likeness(gallery.model_id, vectors, threshold)


@dataclass(frozen=True)
class DeletionRecord:
    """One erasure: who, when, how many of what (no biometric data, the name only as a salted hash)."""

    ts: float
    actor: str
    salt: str
    identity_hash: str
    removed: dict[str, int] = field(default_factory=dict)

    @classmethod
    def new(cls, identity: str, actor: str, removed: dict[str, int]) -> DeletionRecord:
        salt = secrets.token_hex(16)
        return cls(time.time(), actor, salt, _digest(salt, identity), dict(removed))

    def names(self, identity: str) -> bool:
        """Whether this record is the erasure of ``identity``."""
        return secrets.compare_digest(self.identity_hash, _digest(self.salt, identity))

    def row(self) -> tuple[float, str, str, str, str]:
        return self.ts, self.actor, self.salt, self.identity_hash, json.dumps(self.removed, sort_keys=True)

    @classmethod
    def from_row(cls, row: Sequence[object]) -> DeletionRecord:
        ts, actor, salt, digest, removed = row
        return cls(float(ts), str(actor), str(salt), str(digest), json.loads(str(removed)))  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _digest(salt: str, identity: str) -> str:
    return hashlib.sha256(f"{salt}\0{identity}".encode()).hexdigest()


def local_actor() -> str:
    """Who runs a deletion from the command line: the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no user name in a bare container
        return "cli:unknown"


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def doomed_requests(read: Read, identity: str, likeness: Likeness | None = None) -> list[str]:
    """The ids of the logged requests that name or (with ``likeness``) show ``identity``."""
    ids = {
        str(r[0])
        for r in read(
            "SELECT request_id FROM faces WHERE predicted = ? OR top1_identity = ? "
            "UNION SELECT request_id FROM feedback WHERE truth = ?",
            (identity, identity, identity),
        )
    }
    quoted = repr(identity)  # how error messages quote a name
    rows = read("SELECT request_id, error FROM requests WHERE error LIKE ? ESCAPE '\\'", (_like(quoted),))
    ids.update(str(r) for r, error in rows if quoted in str(error))  # LIKE ignores case in SQLite: check exactly
    if likeness is not None and len(likeness.vectors):
        ids.update(_lookalikes(read, likeness))
    return sorted(ids)


def _lookalikes(read: Read, likeness: Likeness) -> set[str]:
    """Requests with an unrecognised face (no prediction, or unknown) whose logged embedding (same model) scores
    at or above the threshold against one of the person's; a face recognised as someone else is theirs."""
    mine = np.asarray(likeness.vectors, dtype=np.float32)
    mine = mine / np.linalg.norm(mine, axis=1, keepdims=True).clip(min=1e-12)
    found: set[str] = set()
    offset = 0
    while True:
        rows = read(
            "SELECT f.request_id, f.embedding FROM faces f JOIN requests r ON r.request_id = f.request_id "
            "WHERE f.embedding IS NOT NULL AND r.model_id = ? AND (f.predicted IS NULL OR f.predicted = ?) "
            "ORDER BY f.request_id, f.face_index LIMIT ? OFFSET ?",
            (likeness.model_id, UNKNOWN, _PAGE, offset),
        )
        usable = [(str(r), bytes(b)) for r, b in rows if len(bytes(b)) == mine.shape[1] * 2]  # float16 of this D
        if usable:
            logged = np.stack([np.frombuffer(b, dtype=np.float16) for _, b in usable]).astype(np.float32)
            logged /= np.linalg.norm(logged, axis=1, keepdims=True).clip(min=1e-12)
            best = (logged @ mine.T).max(axis=1)
            found.update(r for (r, _), s in zip(usable, best, strict=True) if s >= likeness.threshold)
        if len(rows) < _PAGE:
            return found
        offset += _PAGE


def count_doomed(read: Read, ids: list[str]) -> dict[str, int]:
    """How many requests, faces, feedback rows, stored images and logged embeddings ``ids`` hold."""
    totals = dict.fromkeys(("requests", "faces", "feedback", "images", "embeddings"), 0)
    for chunk in chunks(ids):
        marks = ",".join("?" * len(chunk))
        requests, images = read(
            f"SELECT COUNT(*), COUNT(image) FROM requests WHERE request_id IN ({marks})", chunk
        )[0]
        faces, embeddings = read(
            f"SELECT COUNT(*), COUNT(embedding) FROM faces WHERE request_id IN ({marks})", chunk
        )[0]
        feedback = read(f"SELECT COUNT(*) FROM feedback WHERE request_id IN ({marks})", chunk)[0][0]
        for key, n in zip(totals, (requests, faces, feedback, images, embeddings), strict=True):
            totals[key] += int(n or 0)
    return totals


def chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
