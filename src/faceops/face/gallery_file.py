"""The gallery's file: a NumPy ``.npz`` archive read with pickle disabled, checked array by array, written atomically.

Arrays: ``header`` (JSON: format version, model id, the journal ``base`` id, and for indexed galleries the index
file's stamp),
``embeddings`` (M, D) float32 (float16 for indexed galleries), ``labels`` and ``sources`` (fixed-width unicode),
and, for indexed galleries, ``keys`` (each row's key in the index file ``<file>.index``). Readers ignore arrays
they do not know, so files stay readable by earlier FaceOps versions.

Changes after a save go to a journal next to the file (``<file>.journal``) instead of rewriting it: one record per
enrolment or deletion, appended and fsync'ed before the change is made in memory, so a change acknowledged to a
caller survives a crash (kill -9) at the cost of one small write. A record is ``<length> <crc32>`` (two little-endian
uint32) and a payload: a JSON line (the ``base`` id of the gallery file it follows, the operation, the identity,
the sources, the embeddings' shape) and the float32 embeddings. The base id ties a journal to one saved file: a
save writes a new id and then deletes the journal, so a crash in between leaves a journal that the next load
recognises as already contained in the file. A torn last record (a crash mid-append: never acknowledged) is cut
off at load.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceops.errors import GalleryError
from faceops.storage import atomic_file

__all__ = [
    "FORMAT_VERSION",
    "JournalRecord",
    "append_journal",
    "index_path",
    "journal_path",
    "read_gallery_file",
    "read_journal",
    "write_gallery_file",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_RECORD_HEAD = struct.Struct("<II")  # payload length, crc32 of the payload


def index_path(path: Path) -> Path:
    """Where the ANN index of the gallery at ``path`` lives."""
    return path.with_name(path.name + ".index")


def journal_path(path: Path) -> Path:
    """Where the changes made since the gallery at ``path`` was saved are appended."""
    return path.with_name(path.name + ".journal")


@dataclass(frozen=True)
class JournalRecord:
    """One change after a save: ``add`` (embeddings with their sources) or ``remove`` (every embedding)."""

    op: str
    identity: str
    embeddings: np.ndarray | None = None
    sources: tuple[str, ...] = ()


def append_journal(path: Path, base: str, record: JournalRecord) -> int:
    """Append ``record`` to the journal of the gallery file ``path`` (saved with id ``base``), durably (fsync);
    the journal's size in bytes afterwards."""
    header: dict[str, object] = {"base": base, "op": record.op, "identity": record.identity}
    body = b""
    if record.embeddings is not None:
        vectors = np.ascontiguousarray(record.embeddings, dtype="<f4")
        header |= {"sources": list(record.sources), "shape": list(vectors.shape)}
        body = vectors.tobytes()
    payload = json.dumps(header).encode() + b"\n" + body
    with journal_path(path).open("ab") as handle:
        handle.write(_RECORD_HEAD.pack(len(payload), zlib.crc32(payload)) + payload)
        handle.flush()
        os.fsync(handle.fileno())
        return handle.tell()


def read_journal(path: Path, base: str | None) -> Iterator[JournalRecord]:
    """The changes journalled after the gallery file ``path`` (saved with id ``base``) was written, in order.

    A journal of another base (already contained in the file: a crash between a save and the journal's removal)
    is deleted; a torn or damaged record ends the journal there (what follows is cut off, with a warning).
    """
    journal = journal_path(path)
    if not journal.is_file():
        return
    data = journal.read_bytes()
    offset = 0
    while offset < len(data):
        record = _parse(data, offset)
        if record is None:
            log.warning("%s: a torn or damaged record at byte %d of %d: the journal is cut off there "
                        "(an append that never completed was never acknowledged)", journal, offset, len(data))
            with journal.open("rb+") as handle:
                handle.truncate(offset)
                os.fsync(handle.fileno())
            return
        header, vectors, size = record
        if header.get("base") != base:
            log.info("%s follows another save of %s (already in the file): removed", journal, path)
            journal.unlink(missing_ok=True)
            return
        yield JournalRecord(str(header["op"]), str(header["identity"]), vectors, tuple(header.get("sources", ())))
        offset += size


def _parse(data: bytes, offset: int) -> tuple[dict, np.ndarray | None, int] | None:
    """The record at ``offset`` (header, embeddings, its size in bytes), or None when torn or damaged."""
    if offset + _RECORD_HEAD.size > len(data):
        return None
    length, crc = _RECORD_HEAD.unpack_from(data, offset)
    payload = data[offset + _RECORD_HEAD.size : offset + _RECORD_HEAD.size + length]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None
    line, _, body = payload.partition(b"\n")
    try:
        header = json.loads(line)
        vectors = np.frombuffer(body, dtype="<f4").reshape(header["shape"]) if "shape" in header else None
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(header, dict) or header.get("op") not in ("add", "remove"):
        return None
    return header, vectors, _RECORD_HEAD.size + length


def write_gallery_file(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically: the old file stays intact until the new one is complete."""
    with atomic_file(path) as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # the stub types **kwds as allow_pickle


def read_gallery_file(
    path: Path, with_embeddings: bool = True
) -> tuple[dict, np.ndarray | None, np.ndarray, np.ndarray, np.ndarray | None]:
    """Header, embeddings (None unless ``with_embeddings``), labels, sources and keys (None when absent) of a
    gallery file. A gallery whose index file holds its vectors needs no second copy of them at start-up.

    Raises:
        GalleryError: naming the file, when it is missing, not a ``.npz`` archive (empty, truncated,
            garbage), holds pickled objects, or lacks or mangles the gallery's arrays.
    """
    if not path.is_file():
        raise GalleryError(f"gallery not found: {path}")
    try:
        with path.open("rb") as head:
            magic = head.read(4)
    except OSError as exc:
        raise GalleryError(f"cannot read the gallery {path}: {exc}") from exc
    if magic != b"PK\x03\x04":  # an .npz is a ZIP archive; np.load would try to unpickle anything else
        what = "an empty file" if not magic else "not a .npz archive"
        raise GalleryError(f"{path} is not a FaceOps gallery: {what}")
    try:
        # our own handle: np.load leaves the file it opened unclosed when the archive is damaged
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            missing = sorted({"header", "embeddings", "labels", "sources"} - set(data.files))
            if missing:
                raise GalleryError(f"{path} is not a FaceOps gallery: no {', '.join(missing)} array")
            header = json.loads(str(data["header"]))
            embeddings = data["embeddings"] if with_embeddings else None
            labels, sources = data["labels"], data["sources"]
            keys = data["keys"] if "keys" in data.files else None
    except GalleryError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
            raise GalleryError(f"{path} holds Python objects (pickled data), which are never loaded") from exc
        raise GalleryError(f"{path} is a damaged or foreign gallery file: {type(exc).__name__}: {exc}") from exc
    _check_arrays(path, header, embeddings, labels, sources)
    return header, embeddings, labels, sources, keys


def _check_arrays(
    path: Path, header: object, embeddings: np.ndarray | None, labels: np.ndarray, sources: np.ndarray
) -> None:
    """:class:`GalleryError` naming ``path`` unless the arrays are what :meth:`Gallery.save` writes."""
    if not isinstance(header, dict):
        raise GalleryError(f"{path}: the gallery header is not a JSON object")
    if header.get("format") != FORMAT_VERSION:
        raise GalleryError(f"{path}: unsupported gallery format {header.get('format')!r}")
    if not isinstance(header.get("model_id"), str) or not header["model_id"]:
        raise GalleryError(f"{path}: the gallery header names no model_id")
    if labels.ndim != 1 or sources.ndim != 1 or labels.dtype.kind != "U" or sources.dtype.kind != "U":
        raise GalleryError(f"{path}: labels and sources must be 1-D arrays of text")
    if len(labels) != len(sources):
        raise GalleryError(f"{path}: {len(labels)} labels but {len(sources)} sources")
    if len(labels) == 0 or embeddings is None:
        return
    if embeddings.ndim != 2 or embeddings.dtype.kind != "f" or embeddings.shape[0] != len(labels):
        raise GalleryError(
            f"{path}: embeddings of shape {embeddings.shape} ({embeddings.dtype}) do not match "
            f"{len(labels)} labels (expected a ({len(labels)}, D) float array)"
        )
    if not np.all(np.isfinite(embeddings)):
        raise GalleryError(f"{path}: embeddings contain NaN or infinite values")
