"""The gallery on disk: the gallery file plus (optionally) the consented enrollment photos it was built from.

Keeping the photos lets the service re-embed every identity when a champion with other weights takes over,
so a model swap never silently empties the gallery (:class:`~faceops.serving.store.EmbeddedStore` keeps them here;
the PostgreSQL store keeps them in the database). Photos are stored by content hash under
``enrolled/<identity>/``; identity names are validated so they are safe folder names.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from pathlib import Path

from faceops.errors import GalleryError
from faceops.face.gallery import UNKNOWN

__all__ = ["IDENTITY_PATTERN", "EnrolledPhotos", "check_identity"]

log = logging.getLogger(__name__)
IDENTITY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,127}$"
_IDENTITY_RE = re.compile(IDENTITY_PATTERN)


def check_identity(identity: str) -> str:
    """The identity name, stripped, or :class:`GalleryError` saying what is wrong with it."""
    name = identity.strip()
    if not _IDENTITY_RE.match(name) or name.lower() == UNKNOWN:
        raise GalleryError(
            f"invalid identity name {identity!r}: use 1-128 letters, digits, spaces, '_', '.' or '-', "
            f"starting with a letter or digit, and not {UNKNOWN!r}"
        )
    return name


class EnrolledPhotos:
    """Enrollment photos stored by identity and content hash."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, identity: str, data: bytes) -> str:
        """Store one photo; returns its name (``<identity>/<sha256>``), used as the gallery source."""
        digest = hashlib.sha256(data).hexdigest()[:24]
        folder = self.root / identity
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / digest
        if not path.exists():
            tmp = folder / f".{digest}.tmp"
            tmp.write_bytes(data)
            tmp.replace(path)
        return f"{identity}/{digest}"

    def remove(self, identity: str) -> None:
        shutil.rmtree(self.root / identity, ignore_errors=True)

    def all(self) -> dict[str, list[Path]]:
        if not self.root.is_dir():
            return {}
        return {
            d.name: sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
            for d in sorted(self.root.iterdir())
            if d.is_dir()
        }

