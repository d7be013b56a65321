"""Deterministic train / val / test splits: by identity (open set) and by image within training identities.

Both draws hash a seed with a name, so the same data and seed always give the same split, on any machine:

* an identity is held out for ``test`` when the hash of ``seed:identity`` falls below ``test_fraction``.
  A threshold (not a ranking) keeps every other identity where it was when identities are added in a
  later data version, so a model trained on version N is never evaluated on its own training people of
  version N+1;
* within each training identity the images are ranked by the hash of ``seed:path`` and the first
  ``round(n * val_fraction)`` (at least one when the identity has two or more images) go to ``val``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from pydantic import Field

from faceops.face.config import StrictConfig

__all__ = ["SplitConfig", "assign_splits"]


class SplitConfig(StrictConfig):
    """How a data version is split."""

    test_fraction: float = Field(
        default=0.2, ge=0.0, lt=1.0, description="Share of identities held out (open set)."
    )
    val_fraction: float = Field(
        default=0.2,
        ge=0.0,
        lt=1.0,
        description="Share of a training identity's images kept for closed-set identification.",
    )
    min_train_images: int = Field(default=2, ge=1, description="Identities with fewer images go to test.")
    seed: int = Field(default=0, description="Changes every draw.")


def _unit(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(images: Mapping[str, Sequence[str]], config: SplitConfig | None = None) -> dict[str, str]:
    """Split a dataset.

    Args:
        images: identity -> its image paths (any stable names, e.g. ``identity/file.jpg``).
        config: fractions and seed.

    Returns:
        image path -> ``train``, ``val`` or ``test``.
    """
    config = config or SplitConfig()
    test_ids = {i for i in images if _unit(config.seed, i) < config.test_fraction}
    eligible = [i for i in images if len(images[i]) >= config.min_train_images]
    test_ids |= set(images) - set(eligible)
    if config.test_fraction > 0 and len(images) >= 2 and not test_ids:
        # Small datasets could draw no test identity at all: hold out the lowest-hashed one.
        test_ids = {min(images, key=lambda i: _unit(config.seed, i))}
    if len(test_ids) == len(images) and eligible:
        # ... nor only test identities: keep the highest-hashed eligible one for training.
        test_ids.discard(max(eligible, key=lambda i: _unit(config.seed, i)))
    split: dict[str, str] = {}
    for identity, paths in images.items():
        if identity in test_ids:
            split.update((p, "test") for p in paths)
            continue
        ranked = sorted(paths, key=lambda p: _unit(config.seed, p))
        n_val = round(len(ranked) * config.val_fraction)
        if config.val_fraction > 0 and len(ranked) >= 2:
            n_val = min(max(n_val, 1), len(ranked) - 1)
        split.update((p, "val" if k < n_val else "train") for k, p in enumerate(ranked))
    return split
