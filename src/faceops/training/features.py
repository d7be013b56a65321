"""The frozen trunk and its cached activations, and pixel augmentation of training crops.

Fine-tuning only the last block(s) of InceptionResnetV1 lets the frozen trunk run once per (crop, view): its
activations at the cut point are cached on disk (fp16 ``.npz`` shards keyed by image hash and view), and every
epoch, the final evaluation and the promotion gate reuse them. Any model whose trunk has the same weights (the
pretrained model and everything fine-tuned from it) is embedded from the cache at the cost of its tail alone.

Views: ``clean`` (the aligned crop), ``flip`` (its mirror, for flip-averaged embeddings) and ``aug-<cfg>-<k>``
(colour jitter, small rotation, blur, random flip; drawn from a seed, so a view's content is reproducible).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from faceops.face.embedding import standardize
from faceops.training.config import AugmentConfig

__all__ = ["TrunkCache", "augment_crop", "module_order", "run_tail", "run_trunk", "trunk_id"]

_ORDER = (
    "conv2d_1a",
    "conv2d_2a",
    "conv2d_2b",
    "maxpool_3a",
    "conv2d_3b",
    "conv2d_4a",
    "conv2d_4b",
    "repeat_1",
    "mixed_6a",
    "repeat_2",
    "mixed_7a",
    "repeat_3",
    "block8",
    "avgpool_1a",
    "dropout",
    "last_linear",
    "last_bn",
)


def module_order(cut: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of the frozen trunk and of the trainable tail for a cut point."""
    i = _ORDER.index(cut)
    return _ORDER[:i], _ORDER[i:]


def run_trunk(model: nn.Module, cut: str, batch: torch.Tensor) -> torch.Tensor:
    """Standardised images -> activations at the cut point."""
    for name in module_order(cut)[0]:
        batch = getattr(model, name)(batch)
    return batch


def run_tail(model: Any, cut: str, features: torch.Tensor) -> torch.Tensor:
    """Activations at the cut point -> the un-normalised 512-d embedding (InceptionResnetV1's own forward).

    ``model`` is the backbone, or any object holding its tail modules as attributes (DDP's tail holder)."""
    x = features
    for name in module_order(cut)[1]:
        if name == "last_linear":
            x = x.reshape(x.shape[0], -1)
        x = getattr(model, name)(x)
    return x


def trunk_id(model: nn.Module, cut: str) -> str:
    """A hash of the trunk's weights: equal ids mean cached activations can be shared."""
    digest = hashlib.sha256(cut.encode())
    for name in module_order(cut)[0]:
        for key, tensor in sorted(getattr(model, name).state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def augment_crop(crop: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """A randomly flipped, colour-jittered, darkened, rotated and blurred copy of an RGB ``uint8`` crop."""
    out: np.ndarray = crop.astype(np.float32)
    if config.flip and rng.random() < 0.5:
        out = out[:, ::-1]
    j = config.color_jitter
    if j > 0:
        out = out * rng.uniform(1 - j, 1 + j)  # brightness
        mean = out.mean()
        out = (out - mean) * rng.uniform(1 - j, 1 + j) + mean  # contrast
        gray = out.mean(axis=2, keepdims=True)
        out = (out - gray) * rng.uniform(1 - j, 1 + j) + gray  # saturation
    if config.dark_prob > 0 and rng.random() < config.dark_prob:  # no draw at all when off: old views unchanged
        out = out * rng.uniform(*config.dark_range)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if config.rotation_deg > 0:
        size = out.shape[0]
        angle = rng.uniform(-config.rotation_deg, config.rotation_deg)
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        out = cv2.warpAffine(np.ascontiguousarray(out), matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < config.blur_prob:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=rng.uniform(config.blur_min_sigma, config.blur_sigma))
    return np.ascontiguousarray(out)


def _view_pixels(
    crop: np.ndarray, view: str, augment: AugmentConfig | None, sha: str, seed: int
) -> np.ndarray:
    if view == "clean":
        return crop
    if view == "flip":
        return np.ascontiguousarray(crop[:, ::-1])
    assert augment is not None, "augmented views need an AugmentConfig"
    digest = hashlib.sha256(f"{seed}:{sha}:{view}".encode()).digest()
    return augment_crop(crop, augment, np.random.default_rng(int.from_bytes(digest[:8], "big")))


class TrunkCache:
    """Cached trunk activations of one (preprocessing, cut, trunk weights) triple.

    Args:
        root: the cache root (e.g. ``<cache_dir>``); the folder is
            ``trunk-<cut>-<id>-<preprocess fingerprint>``.
        model: the backbone whose trunk is cached (eval mode).
        cut: the cut point.
        fingerprint: the preprocessing fingerprint of the crops.
        device: where the trunk runs.
    """

    def __init__(self, root: Path, model: nn.Module, cut: str, fingerprint: str, device: str = "cpu") -> None:
        self.model, self.cut, self.device = model, cut, device
        self.id = trunk_id(model, cut)
        self.root = Path(root) / f"trunk-{cut}-{self.id}-{fingerprint}"
        self._index: dict[str, tuple[Path, int]] | None = None

    def _load_index(self) -> dict[str, tuple[Path, int]]:
        if self._index is None:
            self._index = {}
            for shard in sorted(self.root.glob("shard-*.npz")):
                with np.load(shard) as data:
                    for row, key in enumerate(data["keys"]):
                        self._index[str(key)] = (shard, row)
        return self._index

    def shares_trunk(self, model: nn.Module) -> bool:
        """Whether ``model`` can be embedded from this cache (same trunk weights)."""
        return trunk_id(model, self.cut) == self.id

    def features(
        self,
        shas: Sequence[str],
        crops: Callable[[Sequence[str]], np.ndarray],
        view: str,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        batch_size: int = 32,
        desc: str = "trunk",
    ) -> torch.Tensor:
        """Activations (N, ...) of one view of each image, computing and storing the missing ones.

        Args:
            shas: image hashes.
            crops: loads the aligned crops of a list of hashes.
            view: 'clean', 'flip' or 'aug-<k>'.
        """
        index = self._load_index()
        tag = view if not view.startswith("aug") else f"{view}-{_augment_key(augment, seed)}"
        keys = [f"{sha}:{tag}" for sha in shas]
        missing = [i for i, key in enumerate(keys) if key not in index]
        if missing:
            self._compute([shas[i] for i in missing], crops, view, augment, seed, batch_size, desc)
        return self._read(keys)

    @torch.inference_mode()
    def _compute(self, shas, crops, view, augment, seed, batch_size, desc) -> None:  # type: ignore[no-untyped-def]
        tag = view if not view.startswith("aug") else f"{view}-{_augment_key(augment, seed)}"
        bar = tqdm(
            total=len(shas),
            desc=f"{desc} {view}",
            unit="img",
            file=sys.stderr,
            mininterval=0.5 if sys.stderr.isatty() else 15,
        )
        self.model.eval().to(self.device)
        shard_size = max(batch_size, 256)
        for start in range(0, len(shas), shard_size):
            part = list(shas[start : start + shard_size])
            pixels = crops(part)
            out = []
            for b in range(0, len(part), batch_size):
                images = np.stack(
                    [
                        _view_pixels(c, view, augment, s, seed)
                        for c, s in zip(pixels[b : b + batch_size], part[b : b + batch_size], strict=True)
                    ]
                )
                out.append(run_trunk(self.model, self.cut, standardize(images).to(self.device)).half().cpu())
                bar.update(len(images))
            self._write([f"{s}:{tag}" for s in part], torch.cat(out).numpy())
        bar.close()

    def _write(self, keys: list[str], values: np.ndarray) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns()}.npz"
        tmp = self.root / (name + ".tmp")
        with tmp.open("wb") as handle:
            np.savez(handle, keys=np.array(keys), values=values)
        tmp.replace(self.root / name)
        index = self._load_index()
        for row, key in enumerate(keys):
            index[key] = (self.root / name, row)

    def _read(self, keys: list[str]) -> torch.Tensor:
        index = self._load_index()
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for i, key in enumerate(keys):
            shard, row = index[key]
            by_shard.setdefault(shard, []).append((i, row))
        out: np.ndarray | None = None
        for shard, pairs in by_shard.items():
            with np.load(shard) as data:
                values = data["values"][[row for _, row in pairs]]
            if out is None:
                out = np.zeros((len(keys), *values.shape[1:]), dtype=np.float16)
            out[[i for i, _ in pairs]] = values
        assert out is not None
        return torch.from_numpy(out)


def _augment_key(augment: AugmentConfig | None, seed: int) -> str:
    text = augment.model_dump_json() if augment else ""
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()[:8]
