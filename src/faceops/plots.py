"""Plots people would rather look at than tables: ROC curves (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_roc"]


def plot_roc(
    scores: np.ndarray, labels: np.ndarray, path: str | Path, title: str = "Verification ROC", name: str = "pairs"
) -> Path:
    """A ROC curve with a log-scale FAR axis, AUC in the legend, saved as PNG (one curve of
    :func:`faceops.evaluation_plots.plot_rocs`)."""
    from faceops.evaluation_plots import plot_rocs

    return plot_rocs({name: (np.asarray(scores), np.asarray(labels))}, Path(path), title)
