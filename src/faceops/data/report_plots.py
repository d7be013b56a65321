"""The EDA report's plots (matplotlib, Agg backend), one PNG per figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["make_plots"]


def _figure(ncols: int = 1, width: float = 6.0):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 3.6))
    return fig, np.atleast_1d(axes)


def _save(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _hist(ax, values: pd.Series, title: str, xlabel: str, bins: int = 30, log: bool = False) -> None:  # type: ignore[no-untyped-def]
    data = values.dropna().astype(float)
    if data.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.hist(data, bins=bins, color="#4477aa", log=log)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")


def make_plots(facts: pd.DataFrame, faces: pd.DataFrame | None, out: Path) -> dict[str, Path]:
    """Write every figure to ``out`` and return name -> PNG path."""
    out.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}
    counts = facts.groupby("identity")["path"].count().sort_values(ascending=False)

    fig, (rank, hist) = _figure(2)
    rank.loglog(np.arange(1, len(counts) + 1), counts.to_numpy(), marker=".", linestyle="-", color="#4477aa")
    rank.set_title("images per identity, by rank (log-log: the long tail)")
    rank.set_xlabel("identity rank")
    rank.set_ylabel("images")
    hist.hist(counts.to_numpy(), bins=min(40, max(5, len(counts))), color="#4477aa", log=True)
    hist.set_title("identities by number of images")
    hist.set_xlabel("images per identity")
    hist.set_ylabel("identities (log)")
    plots["identities"] = _save(fig, out / "identities.png")

    fig, (sizes, formats, splits) = _figure(3, 4.2)
    readable = facts[facts["readable"]]
    sizes.scatter(readable["width"], readable["height"], s=8, alpha=0.5, color="#4477aa")
    sizes.set_title("image sizes")
    sizes.set_xlabel("width (px)")
    sizes.set_ylabel("height (px)")
    fmt = facts["format"].fillna("unreadable").value_counts()
    formats.bar(fmt.index.astype(str), fmt.to_numpy(), color="#66ccee")
    formats.set_title("formats")
    per_split = facts.groupby("split").agg(images=("path", "count"), identities=("identity", "nunique"))
    per_split.plot.bar(ax=splits, color=["#4477aa", "#ccbb44"], rot=0)
    splits.set_title("splits")
    plots["images"] = _save(fig, out / "images.png")

    fig, axes = _figure(3, 4.2)
    _hist(axes[0], facts["brightness"], "brightness", "mean grey level (0-255)")
    _hist(axes[1], facts["contrast"], "contrast", "grey standard deviation")
    _hist(
        axes[2],
        np.log10(facts["blur"].astype(float).clip(lower=1e-3)),
        "sharpness",
        "log10 variance of the Laplacian (low: blurred)",
    )
    plots["quality"] = _save(fig, out / "quality.png")

    if faces is not None and not faces.empty and "face_size" in faces:
        fig, axes = _figure(3, 4.2)
        _hist(axes[0], faces["face_size"], "face size", "face box side (px, geometric mean)")
        if "yaw" in faces:
            _hist(
                axes[1],
                faces["yaw"],
                "pose proxy (yaw)",
                "nose offset from eye midpoint (inter-ocular units)",
            )
        rate = faces["face_found"].dropna()
        axes[2].bar(
            ["face", "no face"],
            [int((rate == 1).sum()), int((rate == 0).sum())],
            color=["#228833", "#ee6677"],
        )
        axes[2].set_title(
            f"detection rate {rate.mean():.1%} on {len(rate)} images" if len(rate) else "detection"
        )
        plots["faces"] = _save(fig, out / "faces.png")
        if "ita" in faces and faces["ita"].notna().any():
            fig, axes = _figure(1, 6.0)
            _hist(axes[0], faces["ita"], "skin tone proxy (ITA, degrees; higher is lighter)", "ITA (degrees)")
            for bound in (55, 41, 28, 10, -30):
                axes[0].axvline(bound, color="grey", linestyle=":", linewidth=1)
            plots["skin_tone"] = _save(fig, out / "skin_tone.png")
    return plots
