"""``faceops data validate``: check a data version with Great Expectations before anything trains on it.

One row per image (from :func:`faceops.data.facts.image_facts`) plus derived columns, checked by:

=================  ==========================================================================================
readable           every image decodes (missing, empty, truncated and non-image files fail)
sha256             the file still has the bytes the manifest recorded
format             the real format is one of ``allowed_formats``
width / height     within the size bounds
identity_name      identity names are portable (``[A-Za-z0-9][A-Za-z0-9_.-]*``: no spaces, no accents)
dup_identities     no image (by sha256) filed under two identities
dup_splits         no image (by sha256) in two splits (a leak between training and evaluation)
train_images       every training identity has at least ``min_images_per_identity`` images (train + val)
face_detected      a face is found in at least ``min_face_share`` of the images (a sample is run through the
                   detector, or precomputed statistics are read)
=================  ==========================================================================================

:func:`validate_dataset` writes ``validation.json`` (a summary with offending files per check, plus GX's own
result) and GX's HTML data docs (``data_docs/index.html``) to the output folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from faceops.data.facts import face_facts, image_facts, read_stats, sample_paths
from faceops.data.gx import Check, CheckResult, run_checks
from faceops.data.ingest import SAFE_NAME
from faceops.data.manifest import read_manifest
from faceops.errors import DataValidationFailed
from faceops.face.config import StrictConfig

__all__ = ["ValidationConfig", "ValidationReport", "build_frame", "checks_for", "validate_dataset"]


class ValidationConfig(StrictConfig):
    """Thresholds of the data checks (``faceops data validate --config FILE.yaml``)."""

    allowed_formats: tuple[str, ...] = ("JPEG", "PNG")
    min_width: int = Field(default=64, ge=1)
    min_height: int = Field(default=64, ge=1)
    max_width: int = Field(default=6000, ge=1)
    max_height: int = Field(default=6000, ge=1)
    min_images_per_identity: int = Field(default=3, ge=1, description="Per training identity (train + val).")
    identity_pattern: str = SAFE_NAME.pattern
    min_face_share: float = Field(default=0.9, ge=0.0, le=1.0, description="Share of images with a face.")
    face_sample: int = Field(
        default=64,
        ge=0,
        description="Images run through the detector (0: skip the check unless statistics are given).",
    )
    seed: int = 0


@dataclass
class ValidationReport:
    """The outcome of :func:`validate_dataset`."""

    success: bool
    images: int
    checks: list[CheckResult]
    result_path: Path | None = None
    docs_path: Path | None = None
    skipped: list[str] = field(default_factory=list)

    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def summary(self) -> str:
        lines = [
            f"{'PASSED' if self.success else 'FAILED'}: {len(self.checks) - len(self.failed())}/"
            f"{len(self.checks)} checks passed on {self.images} images"
        ]
        for check in self.failed():
            lines.append(f"  x {check.name}: {check.description} ({check.unexpected_count} offending)")
            lines += [f"      {_example(e)}" for e in check.examples[:5]]
        lines += [f"  - skipped: {s}" for s in self.skipped]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "images": self.images,
            "checks": [c.to_dict() for c in self.checks],
            "skipped": self.skipped,
            "data_docs": str(self.docs_path) if self.docs_path else None,
        }


def _example(example: dict[str, Any]) -> str:
    if "error" in example:
        return f"error: {example['error']}"
    return f"{example.get('path')}  ({example.get('value')})"


def build_frame(facts: pd.DataFrame, faces: pd.DataFrame | None = None) -> pd.DataFrame:
    """Add the derived columns the checks need to the per-image facts (and merge face facts by path)."""
    frame = facts.copy()
    frame["identity"] = frame["identity"].astype(str)
    known = frame["sha256"].notna()
    frame["dup_identities"] = frame.groupby("sha256")["identity"].transform("nunique").where(known)
    frame["dup_splits"] = frame.groupby("sha256")["split"].transform("nunique").where(known)
    train = frame["split"] != "test"
    counts = frame[train].groupby("identity")["path"].count()
    frame["train_images"] = frame["identity"].map(counts).where(train)
    frame["face_found"] = np.nan
    if faces is not None and not faces.empty:
        found = faces.drop_duplicates("path").set_index("path")["face_found"]
        frame["face_found"] = frame["path"].map(found).astype(float)
    for column in ("format",):
        frame[column] = frame[column].astype(object)
    return frame


def checks_for(config: ValidationConfig, with_faces: bool) -> list[Check]:
    """The expectations for ``config`` (``face_detected`` only when face facts are available)."""
    checks = [
        Check("readable", "every image is readable", "in_set", "readable", {"value_set": [True]}),
        Check(
            "sha256", "file bytes match the manifest's sha256", "in_set", "sha256_ok", {"value_set": [True]}
        ),
        Check(
            "format",
            f"format is one of {list(config.allowed_formats)}",
            "in_set",
            "format",
            {"value_set": list(config.allowed_formats)},
        ),
        Check(
            "width",
            f"width in [{config.min_width}, {config.max_width}] px",
            "between",
            "width",
            {"min_value": config.min_width, "max_value": config.max_width},
        ),
        Check(
            "height",
            f"height in [{config.min_height}, {config.max_height}] px",
            "between",
            "height",
            {"min_value": config.min_height, "max_value": config.max_height},
        ),
        Check(
            "identity_name",
            "identity names are portable (no spaces or accents)",
            "regex",
            "identity",
            {"regex": config.identity_pattern},
        ),
        Check(
            "dup_identities",
            "no image (sha256) under two identities",
            "between",
            "dup_identities",
            {"max_value": 1},
        ),
        Check("dup_splits", "no image (sha256) in two splits", "between", "dup_splits", {"max_value": 1}),
        Check(
            "train_images",
            f"training identities have >= {config.min_images_per_identity} images",
            "between",
            "train_images",
            {"min_value": config.min_images_per_identity},
        ),
    ]
    if with_faces:
        checks.append(
            Check(
                "face_detected",
                f"a face is detected in >= {config.min_face_share:.0%} of the images",
                "in_set",
                "face_found",
                {"value_set": [1.0], "mostly": config.min_face_share},
            )
        )
    return checks


def validate_dataset(
    data_root: str | Path,
    config: ValidationConfig | None = None,
    *,
    stats: str | Path | None = None,
    out_dir: str | Path | None = None,
    detector: object | None = None,
    progress: Callable[[int], object] | None = None,
) -> ValidationReport:
    """Validate the data version in ``data_root`` (its ``manifest.csv`` and files).

    Args:
        data_root: the data folder.
        config: thresholds.
        stats: precomputed per-image statistics (``path, face_found, ...``); else a sample is detected.
        out_dir: where ``validation.json`` and ``data_docs/`` go (None: nothing is written).
        detector: a :class:`faceops.face.detection.FaceDetector` to reuse.
        progress: called with the number of images processed.

    Raises:
        DataValidationFailed: only when there is nothing to validate (no or a broken manifest); failed checks
            are reported in the returned :class:`ValidationReport`.
    """
    config, root = config or ValidationConfig(), Path(data_root)
    rows = read_manifest(root)
    facts = image_facts(root, rows, progress)
    skipped = []
    if stats is not None:
        faces = read_stats(stats, root)
    elif config.face_sample > 0:
        readable = facts.loc[facts["readable"], "path"].tolist()
        faces = face_facts(root, sample_paths(readable, config.face_sample, config.seed), detector)
    else:
        faces = None
        skipped.append("face_detected (face_sample is 0 and no statistics were given)")
    frame = build_frame(facts, faces)
    out = Path(out_dir) if out_dir is not None else None
    docs = out / "data_docs" if out is not None else None
    results, raw = run_checks(frame, checks_for(config, faces is not None), "faceops_data", docs_dir=docs)
    report = ValidationReport(all(r.success for r in results), len(frame), results, skipped=skipped)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        report.result_path = out / "validation.json"
        report.docs_path = docs / "index.html" if docs is not None else None
        payload = {
            **report.to_dict(),
            "data_root": str(root.resolve()),
            "config": config.model_dump(mode="json"),
            "great_expectations": raw,
        }
        report.result_path.write_text(json.dumps(payload, indent=2, default=str))
    return report


def raise_for_failure(report: ValidationReport) -> None:
    """Raise :class:`DataValidationFailed` with the summary when a check failed."""
    if not report.success:
        raise DataValidationFailed(report.summary())
