"""The reference distributions monitoring compares production with, computed for a model on a data version.

The reference mimics ``/v1/recognize`` traffic on the evaluation data: a gallery is enrolled from the
``train`` images (one embedding per image, as the service enrols), then ``val`` images (people in the gallery)
and ``test`` images (held-out people: impostors) are identified against it at the model's own threshold. Each
probe gives the per-face features the service logs (:data:`FEATURES`; brightness and blur from
:func:`faceops.face.quality.crop_quality`, as in the service), its decision, and its embedding; the probes' accuracy / FAR / FRR
(:mod:`faceops.telemetry.stats`) are the figures a production window is held against.

A :class:`Reference` is saved as a folder (``reference.json``, ``features.csv``, ``embeddings.npy``; no
pickle) that is logged as the ``monitoring_reference`` artifact of the champion's MLflow run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceops.data.manifest import read_manifest
from faceops.errors import DataValidationFailed
from faceops.face.enrol import enrol
from faceops.face.gallery import UNKNOWN, Gallery
from faceops.face.quality import crop_quality
from faceops.telemetry.stats import LabelledFace, performance

__all__ = ["FEATURES", "Reference", "compute_reference", "crop_quality", "log_to_run"]

FEATURES = ("det_probability", "face_size", "brightness", "blur", "top1_similarity", "margin", "unknown")
ARTIFACT_PATH = "monitoring_reference"


@dataclass
class Reference:
    """Per-face feature columns (NaN where not defined), an embedding sample, the performance."""

    features: dict[str, np.ndarray]
    embeddings: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.features.values()))) if self.features else 0

    def save(self, directory: str | Path) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        with (out / "features.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(FEATURES)
            for i in range(len(self)):
                writer.writerow(
                    ["" if math.isnan(v) else f"{v:.6g}" for v in (self.features[c][i] for c in FEATURES)]
                )
        np.save(out / "embeddings.npy", self.embeddings.astype(np.float32), allow_pickle=False)
        (out / "reference.json").write_text(json.dumps(self.meta, indent=2, default=str))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Reference:
        """Read a saved reference; a missing or damaged file raises :class:`DataValidationFailed`."""
        src = Path(directory)
        try:
            meta = json.loads((src / "reference.json").read_text())
            embeddings = np.load(src / "embeddings.npy", allow_pickle=False)
            with (src / "features.csv").open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            features = {c: np.array([float(r[c]) if r[c] != "" else np.nan for r in rows]) for c in FEATURES}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataValidationFailed(f"{src} is not a monitoring reference: {exc}") from exc
        if embeddings.ndim != 2:
            raise DataValidationFailed(
                f"{src}/embeddings.npy: expected a 2-D array, got shape {embeddings.shape}"
            )
        return cls(features, embeddings, meta)


def _probe_features(face: Any, crop: np.ndarray, match: Any) -> dict[str, float]:
    brightness, blur = crop_quality(crop)
    scores = [s for _, s in match.candidates]
    return {
        "det_probability": float(face.probability),
        "face_size": float(face.size),
        "brightness": brightness,
        "blur": blur,
        "top1_similarity": float(scores[0]) if scores else math.nan,
        "margin": float(scores[0] - scores[1]) if len(scores) > 1 else math.nan,
        "unknown": float(match.identity == UNKNOWN),
    }


def _sample(rows: list[Any], max_images: int, seed: int) -> list[Any]:
    """About ``max_images`` rows: half for whole training identities (train + val images), half held out."""

    def rank(key: str) -> bytes:
        return hashlib.sha256(f"{seed}:{key}".encode()).digest()

    known: dict[str, list[Any]] = {}
    for row in rows:
        if row.split in ("train", "val"):
            known.setdefault(row.identity, []).append(row)
    kept: list[Any] = []
    for identity in sorted(known, key=rank):
        if kept and len(kept) + len(known[identity]) > max_images // 2:
            break
        kept += known[identity]
    held_out = sorted((r for r in rows if r.split == "test"), key=lambda r: rank(r.path))
    return kept + held_out[: max(1, max_images - len(kept))]


def compute_reference(
    bundle: Any,
    data_root: str | Path,
    max_embeddings: int = 500,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    max_images: int | None = None,
) -> Reference:
    """The reference of ``bundle`` (a :class:`~faceops.evaluation.bundle.ModelBundle`) on the data version at
    ``data_root``; with ``max_images``, on a deterministic sample of about that many images (whole training
    identities for the gallery with their val images as probes, and held-out images as impostors).

    Raises:
        DataValidationFailed: no manifest, no training images to enrol, or no val/test images to probe with.
    """
    root = Path(data_root)
    rows = read_manifest(root)
    if max_images is not None:
        rows = _sample(rows, max_images, seed)
    gallery_rows = [r for r in rows if r.split == "train"]
    probe_rows = [r for r in rows if r.split in ("val", "test")]
    if not gallery_rows or not probe_rows:
        raise DataValidationFailed(
            f"{root}: a monitoring reference needs train images (the gallery) and val/test images "
            "(the probes)"
        )
    recognizer = bundle.recognizer()
    gallery = Gallery(recognizer.model_id)  # as the service enrols: one embedding per photo
    enrolled = enrol(
        recognizer,
        gallery,
        [(r.identity, root / r.path) for r in gallery_rows],
        names=[r.path for r in gallery_rows],
        progress=progress,
    )
    crops, faces, errors = recognizer.subject_crops([root / r.path for r in probe_rows], progress=progress)
    probes = [i for i in range(len(probe_rows)) if i not in errors]
    if len(gallery) == 0 or not probes:
        raise DataValidationFailed(f"{root}: no face found in the gallery or probe images of the reference")
    embeddings = recognizer.embedder.embed(crops[probes])
    matches = gallery.identify(embeddings, bundle.threshold, top_k=3)
    columns: dict[str, list[float]] = {c: [] for c in FEATURES}
    labelled = []
    for i, match in zip(probes, matches, strict=True):
        for key, value in _probe_features(faces[i], crops[i], match).items():
            columns[key].append(value)
        row = probe_rows[i]
        truth = row.identity if row.split == "val" else "impostor"
        decision = "unknown" if match.identity == UNKNOWN else "known"
        labelled.append(LabelledFace("recognize", decision, match.identity, truth))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(probes), size=min(max_embeddings, len(probes)), replace=False))
    meta = {
        "model_id": recognizer.model_id,
        "threshold": float(bundle.threshold),
        "target_far": None if bundle.target_far is None else float(bundle.target_far),
        "data_version": getattr(bundle, "metadata", {}).get("data_version"),
        "data_root": str(root),
        "gallery_images": len(gallery),
        "gallery_identities": len(gallery.identities),
        "probes": len(probes),
        "no_face": len(enrolled.rejected) + len(errors),
        "performance": performance(labelled).to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    features = {c: np.asarray(v, dtype=np.float64) for c, v in columns.items()}
    return Reference(features, embeddings[pick], meta)


def log_to_run(reference: Reference, run_id: str, uri: str | None = None) -> None:
    """Log ``reference`` as the ``monitoring_reference`` artifact of the MLflow run ``run_id``.

    Raises:
        RegistryError: MLflow refused it (unreachable server, unknown run).
    """
    import tempfile

    from faceops import registry

    with tempfile.TemporaryDirectory(prefix="faceops-reference-") as tmp:
        reference.meta = {**reference.meta, "run_id": run_id}
        folder = reference.save(Path(tmp) / ARTIFACT_PATH)
        registry.log_artifacts(
            run_id, folder, ARTIFACT_PATH, uri, context=f"cannot log the monitoring reference to run {run_id}"
        )
