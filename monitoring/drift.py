"""The Evidently adapter: drift of the per-face features and of the embeddings, window against reference.

The only module that imports Evidently (0.7: ``Report`` / ``Dataset`` / ``DataDefinition``, presets in
``evidently.presets``); its API churn stays here. Per-feature drift is Evidently's ``DataDriftPreset`` (K-S
for numbers and a proportion test for the unknown rate unless the config names a method), read back from the
snapshot's tests. Embedding drift uses Evidently's embedding drift methods (MMD by default, bootstrapped
against the reference) called directly: the ``EmbeddingsDrift`` metric also fits a t-SNE for its plot on every
run, which takes tens of seconds on a CPU for no extra information.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from faceops.monitoring.config import DriftConfig

from faceops.telemetry.reference import FEATURES, Reference
from faceops.training.drift_plan import describe_drift

__all__ = ["DriftResult", "FeatureDrift", "measure_drift"]

EMBEDDINGS = "embeddings"
_MIN_PER_FEATURE = 10


@dataclass
class FeatureDrift:
    """One feature's test: ``drifted`` is ``None`` when it was not tested (``note`` says why)."""

    feature: str
    drifted: bool | None
    score: float | None = None
    method: str | None = None
    threshold: float | None = None
    reference_n: int = 0
    current_n: int = 0
    reference_mean: float | None = None
    current_mean: float | None = None
    note: str = ""


@dataclass
class DriftResult:
    """Every feature's test, the share of tested features that drifted, and Evidently's HTML."""

    features: list[FeatureDrift] = field(default_factory=list)
    html: Path | None = None

    @property
    def tested(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted is not None]

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def share(self) -> float | None:
        return len(self.drifted) / len(self.tested) if self.tested else None

    @property
    def changes(self) -> list[dict[str, Any]]:
        """Direction and size of each drifted feature (window mean against reference mean)."""
        return describe_drift([asdict(f) for f in self.features])

    def to_dict(self) -> dict[str, Any]:
        return {
            "share": self.share,
            "tested": len(self.tested),
            "drifted": self.drifted,
            "changes": self.changes,
            "features": [asdict(f) for f in self.features],
            "html": str(self.html) if self.html else None,
        }


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return round(float(finite.mean()), 6) if len(finite) else None


def _column(values: np.ndarray, name: str) -> pd.Series:
    if name == "unknown":  # the unknown rate: a category, so Evidently tests the proportion
        return pd.Series(
            [None if math.isnan(v) else ("unknown" if v else "known") for v in values], dtype=object
        )
    return pd.Series(values, dtype=float)


def measure_drift(
    reference: Reference,
    faces: pd.DataFrame,
    embeddings: np.ndarray | None,
    config: DriftConfig,
    html_path: Path | None = None,
) -> DriftResult:
    """Test each feature of :data:`FEATURES` and the embeddings; features with too few values are skipped."""
    result = DriftResult()
    usable = []
    for name in FEATURES:
        ref = np.asarray(reference.features.get(name, np.array([])), dtype=float)
        cur = faces[name].to_numpy(dtype=float) if name in faces else np.array([])
        entry = FeatureDrift(
            name,
            None,
            reference_n=int(np.isfinite(ref).sum()),
            current_n=int(np.isfinite(cur).sum()),
            reference_mean=_mean(ref),
            current_mean=_mean(cur),
        )
        if min(entry.reference_n, entry.current_n) < _MIN_PER_FEATURE:
            entry.note = (
                f"not tested: fewer than {_MIN_PER_FEATURE} values (reference {entry.reference_n}, "
                f"window {entry.current_n})"
            )
        else:
            usable.append(name)
        result.features.append(entry)
    if usable:
        _evidently_features(reference, faces, usable, config, result, html_path)
    result.features.append(_embedding_drift(reference.embeddings, embeddings, config))
    return result


def _evidently_features(
    reference: Reference,
    faces: pd.DataFrame,
    columns: list[str],
    config: DriftConfig,
    result: DriftResult,
    html_path: Path | None,
) -> None:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [c for c in columns if c != "unknown"]
    definition = DataDefinition(
        numerical_columns=numeric, categorical_columns=[c for c in columns if c == "unknown"]
    )
    ref = pd.DataFrame({c: _column(np.asarray(reference.features[c], dtype=float), c) for c in columns})
    cur = pd.DataFrame({c: _column(faces[c].to_numpy(dtype=float), c) for c in columns})
    preset = DataDriftPreset(columns=columns, method=config.method, threshold=config.threshold)
    snapshot = Report([preset], include_tests=True).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    raw = snapshot.dict()
    scores = {}
    for metric in raw.get("metrics", []):
        params = metric.get("config", {})
        if params.get("type", "").endswith("ValueDrift"):
            scores[params["column"]] = (metric.get("value"), params.get("method"), params.get("threshold"))
    failed = {
        t["metric_config"]["params"].get("column"): t["status"] == "FAIL"
        for t in raw.get("tests", [])
        if t.get("id") == "drift"
    }
    for entry in result.features:
        if entry.feature in scores:
            score, method, threshold = scores[entry.feature]
            entry.score = None if score is None else float(score)
            entry.method, entry.threshold = method, threshold
            entry.drifted = bool(failed.get(entry.feature, False))
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot.save_html(str(html_path))
        result.html = html_path


def _drift_method(config: DriftConfig) -> Any:
    from evidently.metrics.embeddings import (
        DistanceDriftMethod,
        MMDDriftMethod,
        ModelDriftMethod,
        RatioDriftMethod,
    )

    pca = config.embedding_pca
    return {
        # Evidently's MMD bootstrap flags drift on samples of the reference itself: MMD is judged by a
        # threshold.
        "mmd": lambda: MMDDriftMethod(pca_components=pca),
        "distance": lambda: DistanceDriftMethod(dist="cosine", bootstrap=True, pca_components=pca),
        "model": lambda: ModelDriftMethod(bootstrap=True, pca_components=pca),
        "ratio": lambda: RatioDriftMethod(pca_components=pca),
    }[config.embedding_method]()


def _embedding_drift(reference: np.ndarray, current: np.ndarray | None, config: DriftConfig) -> FeatureDrift:
    entry = FeatureDrift(
        EMBEDDINGS,
        None,
        method=f"evidently {config.embedding_method}",
        reference_n=len(reference),
        current_n=0 if current is None else len(current),
    )
    if (
        current is None
        or entry.current_n < config.min_embeddings
        or entry.reference_n < config.min_embeddings
    ):
        entry.note = (
            f"not tested: {entry.current_n} window embeddings, {entry.reference_n} reference "
            f"(need {config.min_embeddings}; the log keeps no embeddings and no images)"
        )
        return entry
    pca = config.embedding_pca
    if pca is not None and pca >= min(entry.reference_n, entry.current_n, reference.shape[1]):
        config = config.model_copy(update={"embedding_pca": None})
    columns = [f"e{i}" for i in range(reference.shape[1])]
    rng = np.random.default_rng(0)
    sample = current[rng.choice(len(current), size=min(len(current), config.embedding_sample), replace=False)]
    score, drifted, _ = _drift_method(config)(
        pd.DataFrame(sample, columns=columns), pd.DataFrame(reference, columns=columns)
    )
    entry.score, entry.drifted = float(score), bool(drifted)
    entry.current_n = len(sample)
    ref_centre, cur_centre = reference.mean(axis=0), sample.mean(axis=0)
    entry.reference_mean = round(float(np.linalg.norm(ref_centre)), 6)
    entry.current_mean = round(float(np.linalg.norm(cur_centre)), 6)
    entry.note = "means: norm of the mean embedding"
    return entry
