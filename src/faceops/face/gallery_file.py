"""The gallery's file: a NumPy ``.npz`` archive read with pickle disabled, checked array by array, written atomically.

Arrays: ``header`` (JSON: format version, model id, and for indexed galleries the index file's stamp),
``embeddings`` (M, D) float32 (float16 for indexed galleries), ``labels`` and ``sources`` (fixed-width unicode),
and, for indexed galleries, ``keys`` (each row's key in the index file ``<file>.index``). Readers ignore arrays
they do not know, so files stay readable by earlier FaceOps versions.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from faceops.errors import GalleryError

__all__ = ["FORMAT_VERSION", "index_path", "read_gallery_file", "write_gallery_file"]

FORMAT_VERSION = 1


def index_path(path: Path) -> Path:
    """Where the ANN index of the gallery at ``path`` lives."""
    return path.with_name(path.name + ".index")


def write_gallery_file(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically: the old file stays intact until the new one is complete."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]  # the stub types **kwds as allow_pickle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_gallery_file(path: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Header, embeddings, labels, sources and keys (None when absent) of a gallery file.

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
            embeddings, labels, sources = data["embeddings"], data["labels"], data["sources"]
            keys = data["keys"] if "keys" in data.files else None
    except GalleryError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
            raise GalleryError(f"{path} holds Python objects (pickled data), which are never loaded") from exc
        raise GalleryError(f"{path} is a damaged or foreign gallery file: {type(exc).__name__}: {exc}") from exc
    _check_arrays(path, header, embeddings, labels, sources)
    return header, embeddings, labels, sources, keys


def _check_arrays(path: Path, header: object, embeddings: np.ndarray, labels: np.ndarray, sources: np.ndarray) -> None:
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
    if len(labels) == 0:
        return
    if embeddings.ndim != 2 or embeddings.dtype.kind != "f" or embeddings.shape[0] != len(labels):
        raise GalleryError(
            f"{path}: embeddings of shape {embeddings.shape} ({embeddings.dtype}) do not match "
            f"{len(labels)} labels (expected a ({len(labels)}, D) float array)"
        )
    if not np.all(np.isfinite(embeddings)):
        raise GalleryError(f"{path}: embeddings contain NaN or infinite values")
