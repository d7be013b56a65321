"""The accuracy-parity gate: a faster variant replaces a model only if it is (almost) as accurate.

Both models are scored on LFW's pairs protocol (folds 1-8 by default; 9 and 10 stay for final reporting), and on
a data version when one is given, each with its OWN preprocessing. The variant is admitted only if

* its LFW k-fold accuracy is at most ``max_accuracy_drop_points`` below the champion's (and so is its closed-set
  accuracy on the data version),
* its TAR at the target FAR is at most ``max_tar_drop_points`` below the champion's (LFW and data version),
* its threshold, recalibrated at the target FAR, still meets that FAR on pairs it was not calibrated on: on LFW
  each fold's threshold comes from the other folds and the false accepts of the held-out folds are pooled; the
  FAR is met unless that count is significantly above the target (one-sided binomial test at
  ``far_significance``), because a few hundred impostors per fold cannot show 1e-3 exactly.

Crops are cached by detector and alignment only (the embedder part of the preprocessing does not change them), so
an exported or quantised variant reuses the champion's crops instead of detecting every photo again.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from faceops.data.crops import preprocess_rows
from faceops.data.manifest import ManifestRow
from faceops.errors import ConfigError
from faceops.evaluation.bundle import ModelBundle
from faceops.evaluation.metrics import threshold_at_far, verification_report
from faceops.evaluation.pairs import Pair, read_lfw_pairs
from faceops.face.config import StrictConfig
from faceops.face.embedding import Embedder

__all__ = [
    "ParityConfig",
    "ParityDecision",
    "check_parity",
    "decide_parity",
    "lfw_scores",
    "model_figures",
    "verification_figures",
]

log = logging.getLogger(__name__)


class ParityConfig(StrictConfig):
    """Tolerances of the parity gate and the LFW pairs it uses."""

    max_accuracy_drop_points: float = Field(
        default=0.3, ge=0, le=100, description="Accuracy (LFW k-fold; data version closed set) may drop this "
        "many percentage points."
    )
    max_tar_drop_points: float = Field(
        default=0.5, ge=0, le=100, description="TAR at the target FAR may drop this many percentage points."
    )
    target_far: float = Field(default=1e-3, gt=0, lt=1, description="The FAR thresholds are calibrated for.")
    far_significance: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="The held-out FAR fails when its false accepts are this unlikely under the target FAR "
        "(one-sided binomial test).",
    )
    lfw_pairs: Path = Field(description="LFW pairs.txt.")
    lfw_root: Path = Field(description="LFW images, one folder per person.")
    folds: list[int] = Field(default=[1, 2, 3, 4, 5, 6, 7, 8], min_length=2, description="LFW folds (1-based).")
    pairs_per_fold: int | None = Field(
        default=None, ge=2, description="Use only this many pairs of each fold, half matched, half mismatched "
        "(quick checks); default: all."
    )


@dataclass
class ParityDecision:
    """The gate's verdict, with every figure it was based on."""

    admitted: bool
    reasons: list[str]
    champion: dict[str, Any]
    variant: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def recalibrated_threshold(self) -> float:
        return float(self.variant["lfw"]["threshold"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _select_pairs(config: ParityConfig) -> list[Pair]:
    pairs = read_lfw_pairs(config.lfw_pairs, config.lfw_root, config.folds)
    if config.pairs_per_fold is None:
        return pairs
    half = config.pairs_per_fold // 2
    kept: list[Pair] = []
    for fold in config.folds:
        of_fold = [p for p in pairs if p.fold == fold]
        kept += [p for p in of_fold if p.same][:half] + [p for p in of_fold if not p.same][:half]
    return kept


def lfw_scores(
    bundle: ModelBundle, pairs: list[Pair], root: Path, cache_dir: Path, timing_faces: int = 32
) -> tuple[np.ndarray, dict[str, Any]]:
    """Cosine scores of the pairs with the bundle's own preprocessing (-1 where a photo has no face found), and
    facts of the run: photos, photos with no face, embedding milliseconds per face (measured on a few crops)."""
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    rows = [
        ManifestRow(
            str(path.relative_to(root)),
            path.parent.name,
            "test",
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else f"missing:{path}",
            0,
            0,
            "",
        )
        for path in paths
    ]
    # the crop cache is keyed by detector + alignment (PreprocessConfig.crop_fingerprint): variants share it
    pre = preprocess_rows(Path(root), rows, bundle.preprocess, cache_dir=cache_dir)
    ok = [r for r in rows if r.path not in pre.failed]
    crops = pre.crops([r.sha256 for r in ok])
    embedder = Embedder(bundle.preprocess.embedder, model=bundle.backbone, model_id=bundle.model_id)
    embeddings = embedder.embed(crops)
    where = {Path(root) / r.path: i for i, r in enumerate(ok)}
    scores = np.array(
        [float(embeddings[where[p.a]] @ embeddings[where[p.b]]) if p.a in where and p.b in where else -1.0 for p in pairs]
    )
    sample = crops[:timing_faces]
    embedder.embed(sample[:2])  # warm-up
    start = time.perf_counter()
    embedder.embed(sample)
    ms = (time.perf_counter() - start) * 1000 / max(len(sample), 1)
    return scores, {"images": len(rows), "no_face": len(pre.failed), "embed_ms_per_face": ms, "dim": embedder.dim}


def verification_figures(
    scores: np.ndarray, labels: np.ndarray, folds: np.ndarray, target_far: float
) -> dict[str, Any]:
    """k-fold accuracy, AUC, TAR at the target FAR, the threshold at that FAR on all pairs, and the FAR that
    cross-fold recalibration reaches on held-out folds (each fold judged at the threshold of the others)."""
    from scipy.stats import binom

    scores, labels, folds = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int), np.asarray(folds)
    report = verification_report(scores, labels, folds, far_targets=(1e-2, target_far))
    per_fold = []
    for fold in np.unique(folds):
        held_out = folds == fold
        threshold = threshold_at_far(scores[~held_out & (labels == 0)], target_far)
        impostors = scores[held_out & (labels == 0)]
        per_fold.append(
            {"fold": int(fold), "threshold": threshold, "false_accepts": int((impostors >= threshold).sum()),
             "impostors": len(impostors)}
        )
    false_accepts = sum(f["false_accepts"] for f in per_fold)
    impostors = sum(f["impostors"] for f in per_fold)
    return {
        "pairs": len(scores),
        "accuracy": report.accuracy_mean,
        "auc": report.auc,
        "tar_at_far": report.tar_at_far[f"{target_far:g}"],
        "tar_at_far_0.01": report.tar_at_far["0.01"],
        "threshold": threshold_at_far(scores[labels == 0], target_far),
        "heldout_far": false_accepts / impostors if impostors else float("nan"),
        "heldout_false_accepts": false_accepts,
        "heldout_impostors": impostors,
        # P(at least this many false accepts | the true FAR is the target)
        "heldout_far_p_value": float(binom.sf(false_accepts - 1, impostors, target_far)) if impostors else 1.0,
        "folds": per_fold,
    }


def model_figures(
    bundle: ModelBundle, config: ParityConfig, *, cache_dir: Path, pairs: list[Pair] | None = None
) -> dict[str, Any]:
    """One model's LFW figures as the gate uses them (``check_parity``'s ``champion_figures`` takes them), with
    its family, backend, precision and id."""
    pairs = pairs if pairs is not None else _select_pairs(config)
    labels = np.array([p.same for p in pairs], dtype=int)
    folds = np.array([p.fold for p in pairs])
    scores, facts = lfw_scores(bundle, pairs, Path(config.lfw_root), cache_dir)
    return {
        "lfw": {**verification_figures(scores, labels, folds, config.target_far), **facts},
        "family": bundle.family,
        "backend": bundle.backend,
        "precision": bundle.preprocess.embedder.precision,
        "model_id": bundle.model_id,
    }


def _points(value: float) -> str:
    return f"{100 * value:.2f}%"


def decide_parity(
    champion: dict[str, Any], variant: dict[str, Any], config: ParityConfig
) -> tuple[bool, list[str]]:
    """Apply the gate to the figures of both models (``lfw`` and, optionally, ``data`` sections).

    Returns:
        whether the variant is admitted and, for each failed condition, a sentence with the numbers.
    """
    reasons = []
    far = f"{config.target_far:g}"
    for section, where in (("lfw", "LFW pairs"), ("data", "the data version")):
        if section not in variant or section not in champion:
            continue
        c, v = champion[section], variant[section]
        drop = 100 * (c["accuracy"] - v["accuracy"])
        if drop > config.max_accuracy_drop_points:
            reasons.append(
                f"accuracy on {where} drops {drop:.2f} points ({_points(c['accuracy'])} -> {_points(v['accuracy'])}), "
                f"more than {config.max_accuracy_drop_points:g}"
            )
        drop = 100 * (c["tar_at_far"] - v["tar_at_far"])
        if drop > config.max_tar_drop_points:
            reasons.append(
                f"TAR at FAR {far} on {where} drops {drop:.2f} points ({_points(c['tar_at_far'])} -> "
                f"{_points(v['tar_at_far'])}), more than {config.max_tar_drop_points:g}"
            )
        if v["heldout_far_p_value"] < config.far_significance:
            reasons.append(
                f"the recalibrated threshold misses the target FAR {far} on held-out {where}: "
                f"{v['heldout_false_accepts']} false accepts of {v['heldout_impostors']} impostors "
                f"(FAR {v['heldout_far']:.2e}, p = {v['heldout_far_p_value']:.3g} < {config.far_significance:g}; "
                f"the champion's: {c['heldout_false_accepts']} of {c['heldout_impostors']})"
            )
    return not reasons, reasons


def _data_figures(report: dict[str, Any], name: str, target_far: float) -> dict[str, Any]:
    """The gate's figures of one model of :func:`~faceops.training.run.evaluate_bundles`'s report."""
    from scipy.stats import binom

    closed, opened = report["models"][name]["closed_set"], report["models"][name]["open_set"]
    impostors = int(opened["impostors"])
    false_accepts = int(round(opened["far_at_threshold"] * impostors))
    return {
        "accuracy": closed["accuracy"],
        "tar_at_far": opened["tar_at_far"][f"{target_far:g}"],
        "threshold": opened["threshold"],
        "heldout_far": opened["far_at_threshold"],
        "heldout_false_accepts": false_accepts,
        "heldout_impostors": impostors,
        "heldout_far_p_value": float(binom.sf(false_accepts - 1, impostors, target_far)) if impostors else 1.0,
    }


def check_parity(
    champion: ModelBundle,
    variant: ModelBundle,
    config: ParityConfig,
    *,
    cache_dir: Path,
    data_root: Path | None = None,
    champion_figures: dict[str, Any] | None = None,
) -> ParityDecision:
    """Score both models (each with its own preprocessing), decide, and set the variant's threshold to the one
    recalibrated at the target FAR on the LFW folds.

    Args:
        champion_figures: the champion's figures from an earlier call with the same config (saves scoring it
            again when several variants are gated against it).
    """
    if not config.lfw_pairs.is_file():
        raise ConfigError(f"LFW pairs file not found: {config.lfw_pairs}")
    pairs = _select_pairs(config)
    figures: dict[str, dict[str, Any]] = {
        name: champion_figures if name == "champion" and champion_figures is not None
        else model_figures(bundle, config, cache_dir=cache_dir, pairs=pairs)
        for name, bundle in (("champion", champion), ("variant", variant))
    }
    if data_root is not None:
        from faceops.training.config import EvalConfig
        from faceops.training.run import evaluate_bundles

        eval_config = EvalConfig(target_far=config.target_far, far_targets=(1e-2, config.target_far))
        report = evaluate_bundles(
            {"champion": champion, "variant": variant}, Path(data_root), eval_config, cache_dir=cache_dir
        ).report
        for name in ("champion", "variant"):
            figures[name]["data"] = _data_figures(report, name, config.target_far)
    admitted, reasons = decide_parity(figures["champion"], figures["variant"], config)
    variant.threshold = float(figures["variant"]["lfw"]["threshold"])
    variant.target_far = config.target_far
    variant.metadata["threshold_calibrated_on"] = f"LFW pairs folds {','.join(map(str, config.folds))}"
    return ParityDecision(admitted, reasons, figures["champion"], figures["variant"], config.model_dump(mode="json"))
