"""A data version by reference: its files fetched from the DVC remote by content hash, without git or DVC.

A pipeline step gets a data version as its DVC pointer (``data.dvc``, the md5 of the ``data/`` folder) and the
remote's URL. DVC 3 stores every file of a remote under ``files/md5/<2 hex>/<30 hex>`` and the folder's
listing (``[{"md5", "relpath"}, ...]``) as the object ``<folder md5>.dir``; this module reads that layout
through :mod:`faceops.storage`, so it works on the local folder remote of ``make run`` and on S3 alike, and
checks every file's md5 as it arrives. The files land in ``<cache_dir>/data-<md5>/data/`` (with the pointer
next to it, where :func:`faceops.training.run.data_version` finds it); files already there are not fetched
again, so a second step on the same machine (or the same volume) costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from faceops.data.manifest import MANIFEST_NAME, ManifestRow, read_manifest
from faceops.data.versioning import DATA_DIR, DataPointer
from faceops.errors import RemoteUnavailable, VersioningError
from faceops.storage import Store, open_store

__all__ = ["checkout_version", "object_name"]

Selector = Callable[[list[ManifestRow]], Iterable[ManifestRow]]


def object_name(md5: str) -> str:
    """Where DVC 3 keeps the object of hash ``md5`` in a remote (``files/md5/ab/cdef...``)."""
    return f"files/md5/{md5[:2]}/{md5[2:]}"


def _md5(path: Path) -> str:
    digest = hashlib.md5()  # noqa: S324 - DVC's content hash, not a security measure
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(store: Store, md5: str, dest: Path, remote: str) -> None:
    if dest.is_file():
        return  # written only after its md5 was checked, atomically
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.fetch.tmp")  # two steps may share the cache
    try:
        store.get(object_name(md5), tmp)
    except RemoteUnavailable as exc:
        raise RemoteUnavailable(
            f"data version file {dest.name} (md5 {md5}) is not in the DVC remote {remote}: was the version pushed? ({exc})"
        ) from exc
    actual = _md5(tmp)
    if actual != md5.removesuffix(".dir"):  # a folder's listing is named by its md5 plus ".dir"
        tmp.unlink()
        raise VersioningError(f"{remote}: object {md5} holds content with md5 {actual} (damaged remote)")
    tmp.replace(dest)


def checkout_version(pointer_text: str, remote: str, cache_dir: Path, select: Selector | None = None) -> Path:
    """The data folder of the version ``pointer_text`` (a ``data.dvc``), fetched from DVC remote ``remote``.

    Args:
        pointer_text: the pointer file's YAML.
        remote: the DVC remote's URL (``s3://bucket/prefix`` or a folder).
        cache_dir: the step's scratch cache.
        select: given the manifest rows, the rows whose images to fetch (default: every file of the
            version); the manifest itself is always fetched.

    Raises:
        VersioningError: not a pointer to a folder, or a damaged object; RemoteUnavailable: the remote lacks
            the version or cannot be reached; ConfigError: S3 without credentials.
    """
    pointer = DataPointer.parse(pointer_text, "data version pointer")
    if not pointer.md5.endswith(".dir"):
        raise VersioningError(f"the data version pointer names {pointer.md5!r}, not a folder (md5 ending in .dir)")
    md5 = pointer.md5.removesuffix(".dir")
    top = Path(cache_dir) / f"data-{md5}"
    root = top / DATA_DIR
    listing_path = top / "listing.json"
    store = open_store(remote)
    if not listing_path.is_file():
        _fetch(store, pointer.md5, listing_path, remote)
    entries = {e["relpath"]: e["md5"] for e in json.loads(listing_path.read_text())}
    if MANIFEST_NAME not in entries:
        raise VersioningError(f"data version {md5} has no {MANIFEST_NAME}: not a FaceOps data version")
    _fetch(store, entries[MANIFEST_NAME], root / MANIFEST_NAME, remote)
    rows = None if select is None else select(read_manifest(root))
    wanted = list(entries) if rows is None else [MANIFEST_NAME, *(r.path for r in rows)]
    for rel in wanted:
        if rel not in entries:
            raise VersioningError(f"data version {md5}: the manifest lists {rel}, the version does not hold it")
        _fetch(store, entries[rel], root / rel, remote)
    (top / f"{DATA_DIR}.dvc").write_text(pointer_text)
    return root
