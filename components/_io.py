"""Helpers that component bodies import at run time (no kfp import here: they act on artifact objects)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
