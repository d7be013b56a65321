"""The deny list: identities deleted on request, which no future data version may contain again.

``faceops identities delete NAME --purge-data`` adds a name; :func:`~faceops.data.importer.import_dataset` leaves
every listed identity out of the data versions it builds (the import's problems say how many, never who). Data
versions already recorded are immutable (DVC and git keep them, by design): the deletion takes effect from the next
import; removing a person from old versions means rewriting history (``dvc gc`` of the old cache objects and the
git commits that point to them), which this tool does not do silently.

The file is ``deleted-identities.txt`` beside ``data.dvc`` (commit it, so every clone excludes the same people).
It holds one SHA-256 per line of the name in its safe form (:func:`~faceops.data.ingest.safe_name`, lower case),
so ``Colin Powell`` and ``Colin_Powell`` are one person, and the list does not spell out whom it erased. The hash
is not salted (the importer must recognise the name in any source): it keeps names out of sight, it does not keep
them secret from someone who guesses them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from faceops.data.ingest import safe_name

__all__ = ["DENY_FILE", "DenyList"]

DENY_FILE = "deleted-identities.txt"
_HEADER = "# FaceOps deny list: SHA-256 of deleted identities (faceops identities delete --purge-data); one a line\n"


def _digest(identity: str) -> str:
    return hashlib.sha256(f"faceops-deny\0{safe_name(identity).lower()}".encode()).hexdigest()


class DenyList:
    """The deleted identities of the data repository at ``root``."""

    def __init__(self, root: str | Path = ".") -> None:
        self.path = Path(root) / DENY_FILE
        self._digests = self._read()

    def _read(self) -> set[str]:
        if not self.path.is_file():
            return set()
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return {line.strip() for line in lines if line.strip() and not line.startswith("#")}

    def __len__(self) -> int:
        return len(self._digests)

    def denies(self, identity: str) -> bool:
        """Whether ``identity`` (a source folder name) was deleted."""
        return _digest(identity) in self._digests

    def add(self, identity: str) -> bool:
        """List ``identity`` (written at once, atomically); False if it already was."""
        digest = _digest(identity)
        if digest in self._digests:
            return False
        self._digests.add(digest)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(_HEADER + "".join(f"{d}\n" for d in sorted(self._digests)), encoding="utf-8")
        tmp.replace(self.path)
        return True
