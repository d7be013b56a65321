"""Images users confirmed through feedback, added to the dataset as a new DVC data version before a
retraining.

Only requests the service kept the image of (``log_store_images``, users' consent) and that show exactly one
face are used: feedback names the identity of that face, so the photo can be filed under it. Faces of
identities the data version has no ``train`` images of are left out (a new identity with one photo cannot be
trained on), as are photos already in the data (same SHA-256). The new version is the current ``data/`` plus
these photos (split ``train``), swapped in and committed by :mod:`faceops.data.versioning`, so a failure
changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from faceops.data.manifest import ManifestRow, read_manifest, write_manifest
from faceops.data.versioning import DATA_DIR, ensure_repo, record_version, replace_data, staging_dir
from faceops.telemetry.requestlog import RequestLogReader
from faceops.telemetry.stats import NON_MATED

__all__ = ["add_confirmed_images", "confirmed_images"]

def confirmed_images(log_path: str | Path, start: float, end: float) -> dict[str, tuple[str, bytes]]:
    """``request_id -> (identity, image bytes)`` of single-face recognize requests with identity feedback."""
    with RequestLogReader(log_path) as log:
        rows = log.confirmed_images(start, end)
    out = {}
    for row in rows:  # oldest first: later feedback replaces earlier
        truth = str(row.truth).strip()
        if truth and truth.lower() not in NON_MATED and truth != "genuine":
            out[row.request_id] = (truth, row.image)
    return out


def _link_tree(src: Path, dst: Path) -> None:
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)  # the files are never modified: a hard link saves copying the dataset
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


def add_confirmed_images(
    log_path: str | Path, repo_root: str | Path, start: float, end: float
) -> dict[str, Any]:
    """Add the confirmed images of ``[start, end)`` to ``repo_root/data`` as a new data version.

    Returns:
        ``added``, ``skipped`` (reason -> count) and ``rev`` (the new data version's commit; None if nothing
        added).
    """
    root = ensure_repo(repo_root)
    rows = read_manifest(root / DATA_DIR)
    trained = {r.identity for r in rows if r.split == "train"}
    known_sha = {r.sha256 for r in rows}
    skipped: dict[str, int] = {}
    new: list[tuple[ManifestRow, bytes]] = []
    for request_id, (identity, data) in confirmed_images(log_path, start, end).items():
        digest = hashlib.sha256(data).hexdigest()
        if identity not in trained:
            skipped["identity not trained on"] = skipped.get("identity not trained on", 0) + 1
            continue
        if digest in known_sha:
            skipped["already in the data"] = skipped.get("already in the data", 0) + 1
            continue
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height, fmt = img.width, img.height, img.format or "JPEG"
        except (UnidentifiedImageError, OSError):
            skipped["not an image"] = skipped.get("not an image", 0) + 1
            continue
        suffix = {"JPEG": ".jpg", "PNG": ".png"}.get(fmt, f".{fmt.lower()}")
        path = f"{identity}/feedback_{request_id[:12]}_{digest[:8]}{suffix}"
        new.append((ManifestRow(path, identity, "train", digest, width, height, fmt), data))
        known_sha.add(digest)
    if not new:
        return {"added": 0, "skipped": skipped, "rev": None}
    stage = staging_dir(root)
    try:
        staged = stage / DATA_DIR
        _link_tree(root / DATA_DIR, staged)
        for row, data in new:
            (staged / row.path).write_bytes(data)
        all_rows = rows + [row for row, _ in new]
        write_manifest(
            all_rows, staged / "manifest.csv"
        )  # written aside and renamed: the old link is untouched
        meta = {
            "images": len(all_rows),
            "identities": len({r.identity for r in all_rows}),
            "splits": {s: sum(r.split == s for r in all_rows) for s in ("train", "val", "test")},
            "source": f"feedback images {len(new)} added to the previous version",
        }
        pointer = replace_data(root, staged, meta)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    rev = record_version(
        root,
        f"data: add {len(new)} feedback-confirmed image(s) for retraining",
        [".gitignore"] if pointer["gitignore_changed"] else [],
    )
    return {"added": len(new), "skipped": skipped, "rev": rev}
