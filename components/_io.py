"""Helpers that component bodies import at run time (no kfp import here: they act on artifact objects)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Set by the local runner (faceops.kfp.pipelines.run.run_local) for the steps it starts: the folder where a
# long step leaves its progress for the terminal's progress bars. Unset on a cluster: no progress files.
PROGRESS_ENV = "FACEOPS_PROGRESS_DIR"


def log_metrics(artifact: Any, values: dict[str, float]) -> None:
    """Log ``values`` on a ``Metrics`` artifact and also write them to its file.

    The file makes the artifact exist on disk, which kfp.local's cache requires before it reuses a step.
    """
    for key, value in values.items():
        artifact.log_metric(key, float(value))
    path = Path(artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2))


def folder(artifact: Any) -> Path:
    """The artifact's path as a folder (created)."""
    path = Path(artifact.path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def progress(step: str, unit: str, every: float = 0.5) -> Callable[[int, int], None] | None:
    """A ``(done, total)`` callback that leaves the step's progress in ``$FACEOPS_PROGRESS_DIR`` as
    ``<step>-<pid>.json`` (``{"step", "done", "total", "unit"}``, replaced atomically, at most every ``every``
    seconds but always at the start and the end); None when the variable is not set."""
    where = os.environ.get(PROGRESS_ENV)
    if not where:
        return None
    path = Path(where) / f"{step}-{os.getpid()}.json"
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if 0 < done < total and now - last[0] < every:
            return
        last[0] = now
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"step": step, "done": int(done), "total": int(total), "unit": unit}))
        tmp.replace(path)

    return report
