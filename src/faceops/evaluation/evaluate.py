"""Evaluation of face models on a data version: closed-set identification, open-set verification, LFW pairs.

* **Closed set** (identities seen in training): each identity's gallery is the mean embedding of its ``train``
  images; every ``val`` image is identified as the nearest identity (cosine). This needs no classification
  head, so a pretrained and a fine-tuned model are measured the same way.
* **Open set** (``test`` identities, never trained on): all pairs of their images. The identities are split by
  a hash of their name: the threshold is calibrated to the target FAR on one part, and ROC / AUC / EER /
  TAR@FAR and FAR / FRR at that threshold are measured on the other, so the FAR reported is not the
  calibration's own.
* **LFW pairs**: the pairs protocol on the folds available, with k-fold accuracy; pairs of people the model
  was trained on are also reported apart (``clean`` excludes them).

Several models are embedded together: those that share the cached trunk cost only their tails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from faceops.data.crops import PreprocessResult, preprocess_rows
from faceops.data.manifest import ManifestRow
from faceops.errors import DataValidationFailed
from faceops.evaluation.metrics import far_frr, threshold_at_far, verification_report
from faceops.evaluation.pairs import read_lfw_pairs
from faceops.face.backends import EmbeddingNet, module_dim
from faceops.face.config import PreprocessConfig
from faceops.face.embedding import Embedder
from faceops.training.config import EvalConfig, LfwPairsConfig
from faceops.training.features import TrunkCache, run_tail

__all__ = ["EvalSet", "closed_set", "embed_models", "evaluate_models", "lfw_pairs_report", "open_set"]


@dataclass
class EvalSet:
    """The usable images of a data version for evaluation, by split."""

    shas: dict[str, list[str]]
    identities: dict[str, list[str]]

    @classmethod
    def from_preprocessed(cls, pre: PreprocessResult) -> EvalSet:
        shas: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        ids: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for row in pre.rows:
            if row.path not in pre.failed:
                shas[row.split].append(row.sha256)
                ids[row.split].append(row.identity)
        return cls(shas, ids)


def embed_models(
    models: Mapping[str, nn.Module | EmbeddingNet],
    shas: Sequence[str],
    pre: PreprocessResult,
    trunk: TrunkCache | None = None,
    flip_average: bool = True,
    device: str = "cpu",
    desc: str = "embed",
) -> dict[str, np.ndarray]:
    """(N, D) unit embeddings of the images for each model (cached trunk activations where the trunk
    matches)."""
    out: dict[str, np.ndarray] = {}
    if not shas:
        return {
            name: np.zeros((0, module_dim(m) if isinstance(m, nn.Module) else m.dim), dtype=np.float32)
            for name, m in models.items()
        }
    cached: dict[str, torch.Tensor] = {}
    for name, model in models.items():
        if trunk is not None and isinstance(model, nn.Module) and trunk.shares_trunk(model):
            if not cached:
                views = ("clean", "flip") if flip_average else ("clean",)
                cached = {v: trunk.features(shas, pre.crops, v, desc=desc) for v in views}
            out[name] = _tail_embed(model, trunk.cut, cached, device)
        else:
            embedder = Embedder(
                pre.cache.config.embedder.model_copy(update={"flip_average": flip_average}),
                device=device,
                model=model,
            )
            out[name] = embedder.embed(pre.crops(shas))
    return out


@torch.inference_mode()
def _tail_embed(model: nn.Module, cut: str, views: dict[str, torch.Tensor], device: str) -> np.ndarray:
    model.eval().to(device)
    chunks = []
    n = len(next(iter(views.values())))
    for start in range(0, n, 256):
        total = torch.stack([run_tail(model, cut, v[start : start + 256].float().to(device)) for v in views.values()]).sum(0)
        chunks.append(torch.nn.functional.normalize(total, dim=1).cpu())
    return torch.cat(chunks).numpy()


def closed_set(
    gallery: np.ndarray, gallery_ids: Sequence[str], probes: np.ndarray, probe_ids: Sequence[str]
) -> dict[str, Any]:
    """Nearest-identity-mean identification of the probes; accuracy, macro P/R/F1, confusion matrix,
    report."""
    from sklearn.metrics import classification_report, confusion_matrix, precision_recall_fscore_support

    labels = sorted(set(gallery_ids))
    if not len(probes) or len(labels) < 2:
        raise DataValidationFailed(
            "closed-set evaluation needs val images and at least two training identities"
        )
    centroids = np.stack([gallery[np.array(gallery_ids) == name].mean(axis=0) for name in labels])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    predicted = [labels[i] for i in np.argmax(probes @ centroids.T, axis=1)]
    truth = list(probe_ids)
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth, predicted, labels=labels, average="macro", zero_division=0
    )
    report = classification_report(truth, predicted, labels=labels, output_dict=True, zero_division=0)
    return {
        "accuracy": float(np.mean(np.array(predicted) == np.array(truth))),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(f1),
        "probes": len(truth),
        "identities": len(labels),
        "labels": labels,
        "confusion_matrix": confusion_matrix(truth, predicted, labels=labels).tolist(),
        "per_identity": {k: v for k, v in report.items() if k in labels},
    }


def _all_pairs(embeddings: np.ndarray, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(len(ids), k=1)
    names = np.array(ids)
    return np.einsum("nd,nd->n", embeddings[i], embeddings[j]), (names[i] == names[j]).astype(int)


def _calibration_part(identity: str, fraction: float) -> bool:
    return (
        int.from_bytes(hashlib.sha256(f"calibration:{identity}".encode()).digest()[:8], "big") / 2**64
        < fraction
    )


def open_set(
    embeddings: np.ndarray, ids: Sequence[str], config: EvalConfig, stored_threshold: float | None = None
) -> dict[str, Any]:
    """Verification on held-out identities with a threshold calibrated on a disjoint part of them."""
    people = sorted(set(ids))
    if len(people) < 2:
        raise DataValidationFailed(
            "open-set evaluation needs test images of at least two held-out identities"
        )
    calib = {p for p in people if _calibration_part(p, config.calibration_fraction)}
    disjoint = 2 <= len(calib) <= len(people) - 2
    mask = np.array([i in calib for i in ids]) if disjoint else np.ones(len(ids), dtype=bool)
    c_scores, c_labels = _all_pairs(embeddings[mask], [i for i, m in zip(ids, mask, strict=True) if m])
    e_mask = ~mask if disjoint else mask
    scores, labels = _all_pairs(embeddings[e_mask], [i for i, m in zip(ids, e_mask, strict=True) if m])
    if len(np.unique(labels)) < 2 or len(np.unique(c_labels)) < 2:
        raise DataValidationFailed(
            "open-set evaluation needs genuine and impostor pairs among the test images"
        )
    threshold = threshold_at_far(c_scores[c_labels == 0], config.target_far)
    report = verification_report(scores, labels, far_targets=config.far_targets).to_dict()
    far, frr = far_frr(scores, labels, threshold)
    result = {
        **report,
        "threshold": threshold,
        "target_far": config.target_far,
        "far_at_threshold": far,
        "frr_at_threshold": frr,
        "calibration_identities": len(calib) if disjoint else len(people),
        "evaluation_identities": len(people) - len(calib) if disjoint else len(people),
        "calibrated_on_same_pairs": not disjoint,
        "scores": scores,
        "labels": labels,
    }
    if stored_threshold is not None:
        result["stored_threshold"] = stored_threshold
        result["far_at_stored_threshold"], result["frr_at_stored_threshold"] = far_frr(
            scores, labels, stored_threshold
        )
    return result


def lfw_pairs_report(
    models: Mapping[str, nn.Module | EmbeddingNet],
    config: LfwPairsConfig,
    preprocess: PreprocessConfig,
    cache_dir: Path,
    trunk: TrunkCache | None,
    exclude: set[str] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """LFW's pairs protocol for each model (cached crops; images with no face score -1, i.e. 'different').

    ``cache_dir`` is the cache root the pairs' crops are read from and added to.
    """
    pairs = read_lfw_pairs(config.pairs, config.root, config.folds)
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    rows = []
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else f"missing:{path}"
        rows.append(
            ManifestRow(str(path.relative_to(config.root)), path.parent.name, "test", digest, 0, 0, "")
        )
    pre = preprocess_rows(Path(config.root), rows, preprocess, cache_dir=cache_dir)
    ok = [r for r in rows if r.path not in pre.failed]
    where = {Path(config.root) / r.path: i for i, r in enumerate(ok)}
    embeddings = embed_models(
        models, [r.sha256 for r in ok], pre, trunk, preprocess.embedder.flip_average, device, desc="lfw"
    )
    labels = np.array([p.same for p in pairs], dtype=int)
    folds = np.array([p.fold for p in pairs])
    clean = np.array([not ({p.a.parent.name, p.b.parent.name} & (exclude or set())) for p in pairs])
    out: dict[str, Any] = {
        "pairs": len(pairs),
        "images": len(paths),
        "no_face": len(pre.failed),
        "folds": sorted({int(f) for f in folds}),
        "clean_pairs": int(clean.sum()),
    }
    for name, emb in embeddings.items():
        scores = np.array(
            [
                float(emb[where[p.a]] @ emb[where[p.b]]) if p.a in where and p.b in where else -1.0
                for p in pairs
            ]
        )
        entry = {"all": verification_report(scores, labels, folds).to_dict()}
        if exclude and clean.sum() and len(np.unique(labels[clean])) == 2:
            entry["clean"] = verification_report(scores[clean], labels[clean], folds[clean]).to_dict()
        out[name] = entry
    return out


def evaluate_models(
    models: Mapping[str, nn.Module | EmbeddingNet],
    pre: PreprocessResult,
    config: EvalConfig,
    trunk: TrunkCache | None = None,
    stored_thresholds: dict[str, float] | None = None,
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """Closed-set and open-set figures of each model on one data version (scores kept for plots)."""
    data = EvalSet.from_preprocessed(pre)
    flip = pre.cache.config.embedder.flip_average
    emb = {
        split: embed_models(models, data.shas[split], pre, trunk, flip, device, desc=split)
        for split in ("train", "val", "test")
    }
    results = {}
    for name in models:
        results[name] = {
            "closed_set": closed_set(
                emb["train"][name], data.identities["train"], emb["val"][name], data.identities["val"]
            ),
            "open_set": open_set(
                emb["test"][name], data.identities["test"], config, (stored_thresholds or {}).get(name)
            ),
        }
    return results
