"""PNG plots of an evaluation: ROCs, confusion matrix, per-identity P/R/F1, training curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_confusion", "plot_curves", "plot_per_identity", "plot_roc", "plot_rocs", "write_plots"]


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    _plt().close(fig)
    return path


def plot_rocs(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """ROC curves (log FAR axis) of several models on the same pairs."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=120)
    for name, (scores, labels) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(np.clip(fpr, 1e-5, 1), tpr, label=f"{name} (AUC {roc_auc_score(labels, scores):.4f})")
    ax.set_xscale("log")
    ax.set_xlim(1e-5, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_confusion(closed: dict[str, Any], path: Path, max_classes: int = 40) -> Path:
    """Row-normalised confusion matrix of the most confused identities (all of them when few)."""
    plt = _plt()
    matrix = np.array(closed["confusion_matrix"], dtype=float)
    labels = list(closed["labels"])
    if len(labels) > max_classes:
        errors = matrix.sum(axis=1) - np.diag(matrix) + matrix.sum(axis=0) - np.diag(matrix)
        keep = np.sort(np.argsort(-errors)[:max_classes])
        matrix, labels = matrix[np.ix_(keep, keep)], [labels[i] for i in keep]
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.22 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(side, side), dpi=110)
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"closed-set identification, accuracy {closed['accuracy']:.3f}")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_per_identity(closed: dict[str, Any], path: Path) -> Path:
    """Precision, recall and F1 of every identity, sorted by F1."""
    plt = _plt()
    items = sorted(closed["per_identity"].items(), key=lambda kv: kv[1]["f1-score"])
    names = [k for k, _ in items]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6.5, max(3.0, 0.16 * len(names) + 1.2)), dpi=110)
    for k, (key, label) in enumerate((("precision", "precision"), ("recall", "recall"), ("f1-score", "F1"))):
        ax.barh(y + (k - 1) * 0.27, [v[key] for _, v in items], height=0.27, label=label)
    ax.set_yticks(y, names, fontsize=6)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("score")
    ax.set_title("per-identity precision / recall / F1 (val)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    return _save(fig, path)


def plot_curves(history: list[dict[str, Any]], path: Path) -> Path:
    """Training and validation loss and accuracy per epoch, both stages on one time axis."""
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=110)
    steps = np.arange(1, len(history) + 1)
    for key, label, ax in (
        ("train_loss", "train", left),
        ("val_loss", "val", left),
        ("train_acc", "train", right),
        ("val_acc", "val", right),
    ):
        ax.plot(steps, [h[key] for h in history], marker="o", ms=3, label=label)
    left.set_yscale("log")  # cross-entropy of an easy task falls by orders of magnitude
    for ax, title in ((left, "loss (log scale)"), (right, "accuracy (head)")):
        switch = [i + 0.5 for i in range(1, len(history)) if history[i]["stage"] != history[i - 1]["stage"]]
        for x in switch:
            ax.axvline(x, color="grey", ls="--", lw=1)
        ax.set_xlabel("epoch (head stage, then fine-tuning)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def write_plots(
    results: dict[str, dict[str, Any]],
    out: Path,
    history: list[dict[str, Any]] | None = None,
    max_classes: int = 40,
) -> list[Path]:
    """Every plot of an evaluation into ``out``; returns the files."""
    paths = [
        plot_rocs(
            {n: (r["open_set"]["scores"], r["open_set"]["labels"]) for n, r in results.items()},
            out / "roc_open_set.png",
            "open-set verification (held-out identities)",
        )
    ]
    for name, result in results.items():
        paths.append(plot_confusion(result["closed_set"], out / f"confusion_{name}.png", max_classes))
        paths.append(plot_per_identity(result["closed_set"], out / f"per_identity_{name}.png"))
    if history:
        paths.append(plot_curves(history, out / "training_curves.png"))
    return paths


def plot_roc(
    scores: np.ndarray, labels: np.ndarray, path: str | Path, title: str = "Verification ROC", name: str = "pairs"
) -> Path:
    """A ROC curve with a log-scale FAR axis, AUC in the legend, saved as PNG (one curve of :func:`plot_rocs`)."""
    return plot_rocs({name: (np.asarray(scores), np.asarray(labels))}, Path(path), title)
