"""The robustness suite: verification pairs re-run under image conditions, plus real-photo slices and groups.

Every distinct image of the pairs is detected, aligned and embedded once as it is (the **clean** pass, which
also gives the landmarks that place occluders and the measures that slice real photos). Then, per condition
(:mod:`faceops.evaluation.conditions`), the condition is applied to the **probe side** of each pair (the second
image; the first stays clean, like an enrolled reference against a live capture) before detection, with a seed
derived from ``seed``, the condition and the image path, so a rerun gives the same pixels. A probe in which no
face is found any more scores -1 (rejected), as in :func:`faceops.face.verification.score_pairs`.

Per condition: TAR at the target FAR (threshold recalibrated on that condition's impostors), FRR and FAR at the
model's own threshold, AUC, the drop of each against clean, and the probes that lost their face. The real-photo
slices (pose, expression, brightness) and the groups (skin tone, quality, user attributes) come from
:mod:`faceops.evaluation.groups` on the clean scores. A condition, slice or group with fewer than ``min_pairs``
genuine or impostor pairs has ``status = "insufficient"``.

Pairs: LFW's ``pairs.txt`` (folds 1-8 by default, :func:`faceops.evaluation.pairs.read_lfw_pairs`) or the
held-out (``test``) identities of a data version (:func:`held_out_pairs`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceops.errors import ConfigError, DataValidationFailed, InvalidImage
from faceops.evaluation.conditions import CONDITIONS, apply_condition, condition_params
from faceops.evaluation.groups import face_measures, group_bins, group_metrics, pair_metrics
from faceops.evaluation.pairs import Pair
from faceops.face.detection import Face
from faceops.face.images import load_image
from faceops.face.recognizer import FaceRecognizer

__all__ = ["SLICES", "RobustnessReport", "held_out_pairs", "plot_robustness", "run_robustness"]

SLICES = ("pose", "expression", "brightness")
_METRICS = (("tar_at_far", "TAR@FAR"), ("frr", "FRR@thr"), ("auc", "AUC"))
Progress = Callable[[str, int, int], None]


@dataclass
class RobustnessReport:
    """Result of :func:`run_robustness` (``to_dict`` is JSON-ready)."""

    threshold: float
    target_far: float
    seed: int
    pairs: int
    clean: dict[str, Any]
    conditions: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "target_far": self.target_far,
            "seed": self.seed,
            "pairs": self.pairs,
            "probe_side": "conditions are applied to the probe (second image) of each pair; the reference stays clean",
            "clean": self.clean,
            "conditions": self.conditions,
            "groups": self.groups,
        }

    def table(self) -> dict[str, list[Any]]:
        """One row per clean / condition / slice or group (columns as lists, ready for ``mlflow.log_table``)."""
        columns = ["kind", "name", "pairs", "genuine", "impostors", "tar_at_far", "frr", "far", "auc"]
        columns += ["tar_drop", "frr_increase", "status"]
        out: dict[str, list[Any]] = {c: [] for c in columns}

        def add(kind: str, name: str, m: Mapping[str, Any]) -> None:
            for c in columns:
                out[c].append(kind if c == "kind" else name if c == "name" else m.get(c))

        add("clean", "clean", self.clean)
        for name, m in self.conditions.items():
            add("condition", name, m)
        for grouping, report in self.groups.items():
            kind = "slice" if grouping in SLICES else "group"
            for name, m in report["groups"].items():
                add(kind, f"{grouping}/{name}", {**m, **_drops(self.clean, m)})
        return out


def _drops(clean: Mapping[str, Any], m: Mapping[str, Any]) -> dict[str, float | None]:
    tar, frr = m.get("tar_at_far"), m.get("frr")
    return {
        "tar_drop": None if tar is None or clean.get("tar_at_far") is None else clean["tar_at_far"] - tar,
        "frr_increase": None if frr is None or clean.get("frr") is None else frr - clean["frr"],
        "auc_drop": None if m.get("auc") is None or clean.get("auc") is None else clean["auc"] - m["auc"],
    }


def held_out_pairs(data_root: str | Path, max_pairs: int = 3000, seed: int = 0) -> list[Pair]:
    """Verification pairs of a data version's held-out (``test``) identities: genuine pairs (all, or a seeded
    sample of half of ``max_pairs``) and as many impostor pairs drawn at random, in one fold."""
    from faceops.data.manifest import read_manifest

    root = Path(data_root)
    by_identity: dict[str, list[Path]] = {}
    for row in read_manifest(root):
        if row.split == "test":
            by_identity.setdefault(row.identity, []).append(root / row.path)
    if len(by_identity) < 2:
        raise DataValidationFailed(f"{root}: robustness pairs need test images of at least two identities")
    rng = np.random.default_rng(seed)
    genuine = [Pair(a, b, True, 1) for paths in by_identity.values() for a, b in itertools.combinations(sorted(paths), 2)]
    if len(genuine) > max_pairs // 2:
        genuine = [genuine[i] for i in sorted(rng.choice(len(genuine), max_pairs // 2, replace=False))]
    names = sorted(by_identity)
    impostors: list[Pair] = []
    for _ in range(max(len(genuine), 1) * 4):
        if len(impostors) >= len(genuine):
            break
        i, j = rng.choice(len(names), 2, replace=False)
        a, b = by_identity[names[i]], by_identity[names[j]]
        impostors.append(Pair(a[rng.integers(len(a))], b[rng.integers(len(b))], False, 1))
    return genuine + impostors


def _seed(seed: int, condition: str, path: Path) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{condition}:{path.name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def _embed_images(
    recognizer: FaceRecognizer, images: Sequence[np.ndarray], chunk: int = 64
) -> tuple[np.ndarray, np.ndarray, list[Face | None]]:
    crops, faces, errors = recognizer.subject_crops(list(images), chunk=chunk)
    embeddings = np.zeros((len(images), recognizer.embedder.dim), dtype=np.float32)
    ok = [i for i in range(len(images)) if i not in errors]
    if ok:
        embeddings[ok] = recognizer.embedder.embed(crops[ok])
    return embeddings, crops, [faces[i] if i not in errors else None for i in range(len(images))]


def _scores(pairs: Sequence[Pair], a: Mapping[Path, np.ndarray | None], b: Mapping[Path, np.ndarray | None]) -> np.ndarray:
    out = np.full(len(pairs), -1.0)
    for k, p in enumerate(pairs):
        ea, eb = a.get(p.a), b.get(p.b)
        if ea is not None and eb is not None:
            out[k] = float(ea @ eb)
    return out


def run_robustness(
    recognizer: FaceRecognizer,
    pairs: Sequence[Pair],
    threshold: float,
    target_far: float = 1e-3,
    conditions: Sequence[str] | None = None,
    severities: Mapping[str, float] | None = None,
    seed: int = 0,
    min_pairs: int = 20,
    attributes: Mapping[str, Mapping[str, str]] | None = None,
    attribute_root: Path | None = None,
    chunk: int = 64,
    progress: Progress | None = None,
) -> RobustnessReport:
    """Run the suite (see the module docstring).

    Args:
        recognizer: the model under test, with its preprocessing.
        pairs: verification pairs; the condition is applied to ``pair.b``.
        threshold: the model's own decision threshold (FRR / FAR are measured there).
        target_far: where TAR is read (the threshold is recalibrated per condition and group).
        conditions: names from :data:`~faceops.evaluation.conditions.CONDITIONS`; all of them by default.
        severities: per-condition severity; the condition's default otherwise.
        seed: the seed of every random part of the conditions.
        min_pairs: fewer genuine or impostor pairs than this: ``status = "insufficient"``.
        attributes: user groupings from :func:`faceops.evaluation.groups.read_attributes`, keyed by image path
            relative to ``attribute_root``.
        progress: called with (stage, done, total).

    Raises:
        ConfigError: an unknown condition or a bad severity.
        DataValidationFailed: no pairs.
    """
    names = list(CONDITIONS) if conditions is None else list(conditions)
    severities = dict(severities or {})
    for name in [*names, *severities]:
        condition_params(name, severities.get(name))  # validates name and severity before any work
    unknown_severity = set(severities) - set(names)
    if unknown_severity:
        raise ConfigError(f"severities given for conditions not run: {sorted(unknown_severity)}")
    if not pairs:
        raise DataValidationFailed("the robustness suite got no pairs")
    labels = np.array([p.same for p in pairs], dtype=int)
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    probes = sorted({p.b for p in pairs})
    notify = progress or (lambda stage, done, total: None)

    clean: dict[Path, np.ndarray | None] = {}
    faces: dict[Path, Face | None] = {}
    measures: dict[Path, dict[str, str]] = {}
    for start in range(0, len(paths), chunk * 4):
        batch = paths[start : start + chunk * 4]
        images: list[np.ndarray] = []
        kept: list[Path] = []
        for path in batch:
            try:
                images.append(load_image(path))
                kept.append(path)
            except InvalidImage:
                clean[path], faces[path] = None, None
        embeddings, crops, found = _embed_images(recognizer, images, chunk)
        for path, image, emb, crop, face in zip(kept, images, embeddings, crops, found, strict=True):
            clean[path], faces[path] = (emb if face is not None else None), face
            if face is not None:
                measures[path] = group_bins(face_measures(image, face, crop))
        notify("clean", min(start + chunk * 4, len(paths)), len(paths))
    clean_scores = _scores(pairs, clean, clean)
    clean_metrics = pair_metrics(clean_scores, labels, threshold, target_far, min_pairs)
    clean_metrics["no_face"] = sum(clean[p] is None for p in paths)
    report = RobustnessReport(float(threshold), float(target_far), seed, len(pairs), clean_metrics)

    for name in names:
        degraded: dict[Path, np.ndarray | None] = {}
        for start in range(0, len(probes), chunk * 4):
            images, kept = [], []
            for path in probes[start : start + chunk * 4]:
                try:
                    image = load_image(path)
                except InvalidImage:
                    continue
                face = faces.get(path)
                landmarks = face.landmarks if face is not None else None
                images.append(apply_condition(image, name, _seed(seed, name, path), severities.get(name), landmarks))
                kept.append(path)
            embeddings, _, found = _embed_images(recognizer, images, chunk)
            for path, emb, face in zip(kept, embeddings, found, strict=True):
                degraded[path] = emb if face is not None else None
            notify(name, min(start + chunk * 4, len(probes)), len(probes))
        scores = _scores(pairs, clean, degraded)
        m = pair_metrics(scores, labels, threshold, target_far, min_pairs)
        m["params"] = condition_params(name, severities.get(name))
        m["no_face"] = sum(degraded.get(p) is None for p in probes)
        m.update(_drops(clean_metrics, m))
        report.conditions[name] = m

    groupings: dict[str, list[str | None]] = {
        g: [measures.get(p.b, {}).get(g) for p in pairs] for g in ("skin_tone", "pose", "expression", "brightness", "quality")
    }
    for attribute, values in (attributes or {}).items():
        groupings[f"attr:{attribute}"] = [values.get(_relative(p.b, attribute_root)) for p in pairs]
    for grouping, groups in groupings.items():
        report.groups[grouping] = group_metrics(grouping, groups, clean_scores, labels, threshold, target_far, min_pairs).to_dict()
    return report


def _relative(path: Path, root: Path | None) -> str:
    if root is None:
        return path.as_posix()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def plot_robustness(report: RobustnessReport | Mapping[str, Any], path: Path) -> Path:
    """Heatmap of condition x metric (TAR at the target FAR, FRR at the threshold, AUC), clean first;
    insufficient rows are hatched grey and labelled."""
    from faceops.evaluation.plots import _plt, _save

    data = report.to_dict() if isinstance(report, RobustnessReport) else dict(report)
    rows = [("clean", data["clean"])] + list(data["conditions"].items())
    values = np.array([[np.nan if m.get(k) is None else float(m[k]) for k, _ in _METRICS] for _, m in rows])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(rows) + 1.5))
    shown = values.copy()
    shown[:, 1] = 1.0 - shown[:, 1]  # FRR: low is good, so colour 1 - FRR like the others
    ax.imshow(np.ma.masked_invalid(shown), cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    for i, (_, m) in enumerate(rows):
        for j in range(len(_METRICS)):
            text = "n/a" if np.isnan(values[i, j]) else f"{values[i, j]:.3f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
        if m.get("status") == "insufficient":
            ax.text(len(_METRICS) - 0.45, i, "insufficient", va="center", fontsize=7, color="grey")
    ax.set_xticks(range(len(_METRICS)), [label for _, label in _METRICS])
    ax.set_yticks(range(len(rows)), [name for name, _ in rows])
    title = f"robustness at FAR {data['target_far']:g} / threshold {data['threshold']:.3f}"
    if np.isnan(values[:, 0]).any():  # TAR at the target FAR needs at least 1/FAR impostors to be read
        title += f"\nTAR n/a: fewer than {math.ceil(1 / data['target_far'])} impostor pairs"
    ax.set_title(title, fontsize=9)
    return Path(_save(fig, path))


def suite_pairs(
    pairs_file: Path | None,
    folds: Sequence[int] | None = None,
    data_root: Path | None = None,
    seed: int = 0,
    max_pairs: int = 3000,
) -> tuple[list[Pair], Path]:
    """The suite's pairs and the folder their image paths (and an attribute CSV) are relative to: a pairs
    file (LFW ``pairs.txt`` or CSV, images beside it) when given, else a data version's held-out identities."""
    from faceops.evaluation.pairs import read_pairs

    if pairs_file is not None:
        return read_pairs(pairs_file, pairs_file.parent, list(folds) if folds else None), pairs_file.parent
    if data_root is None:
        raise ConfigError("the robustness suite needs a pairs file or a data version")
    return held_out_pairs(data_root, max_pairs=max_pairs, seed=seed), Path(data_root)


def attributes_beside(root: Path, path: Path | None = None) -> dict[str, dict[str, str]] | None:
    """The attribute CSV ``path``, else ``<root>/attributes.csv`` when there is one, read and checked."""
    from faceops.evaluation.groups import ATTRIBUTES_FILE, read_attributes

    path = path or (root / ATTRIBUTES_FILE)
    return read_attributes(path, root) if path.is_file() or path != root / ATTRIBUTES_FILE else None


def gate_suite(bundle: Any, gate: Any, data_root: Path, evaluation: Any, lfw_pairs: Any = None) -> dict[str, Any]:
    """The suite the gate compares for one model bundle (a ``ModelBundle``), on the pairs of
    ``gate.robustness`` (else the run's LFW pairs, else the data version's held-out identities), at
    ``evaluation.target_far``."""
    rob, groups = gate.robustness, gate.groups
    pairs_file = rob.pairs if rob is not None and rob.pairs else (lfw_pairs.pairs if lfw_pairs else None)
    folds = rob.folds if rob is not None and rob.pairs else (lfw_pairs.folds if lfw_pairs else None)
    seed = rob.seed if rob is not None else 0
    pairs, root = suite_pairs(pairs_file, folds, data_root, seed)
    attributes = attributes_beside(root, groups.attributes if groups is not None else None)
    report = run_robustness(
        bundle.recognizer(),
        pairs,
        bundle.threshold,
        evaluation.target_far,
        conditions=rob.conditions if rob is not None else [],
        severities=rob.severities if rob is not None else None,
        seed=seed,
        min_pairs=rob.min_pairs if rob is not None else 20,
        attributes=attributes,
        attribute_root=root,
    )
    return report.to_dict()
