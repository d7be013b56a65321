"""Training the detector from scratch (no pretrained weights), seeded, with progress per epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

from faceops.detector.data import Augmenter, LabelledPhoto
from faceops.detector.loss import DetectionLoss, LossConfig
from faceops.detector.model import FaceNet, count_flops
from faceops.detector.targets import to_batch
from faceops.errors import TrainingError
from faceops.face.config import StrictConfig

__all__ = ["DetectorTrainConfig", "TrainResult", "save_checkpoint", "train_detector"]


class DetectorTrainConfig(StrictConfig):
    """A detector training run."""

    seed: int = 0
    size: int = Field(default=256, ge=64, multiple_of=32, description="Side of the training samples, pixels.")
    width: int = Field(default=48, ge=8, description="Channels of the FPN and head.")
    batch_size: int = Field(default=16, ge=1)
    epochs: int = Field(default=20, ge=1)
    steps_per_epoch: int = Field(default=50, ge=1)
    lr: float = Field(default=3e-3, gt=0.0, description="Peak AdamW learning rate (one-cycle cosine schedule).")
    weight_decay: float = Field(default=1e-4, ge=0.0)
    mosaic: float = Field(default=0.5, ge=0.0, le=1.0, description="Share of samples that paste several photos.")
    time_budget_s: float | None = Field(
        default=None,
        gt=0.0,
        description="Seconds of training at most; the learning-rate schedule follows time when it runs out first "
        "(on a loaded machine the steps a budget buys are unknown in advance).",
    )
    threads: int = Field(default=1, ge=1, description="torch CPU threads (on a shared machine one thread runs faster than two).")
    loss: LossConfig = LossConfig()


@dataclass
class TrainResult:
    """What a run produced: the trained network and its per-epoch history."""

    model: FaceNet
    config: DetectorTrainConfig
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "epochs_run": len(self.history),
            "seconds": round(self.seconds, 1),
            "mmac_320": round(count_flops(self.model, 320) / 1e6, 1),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "history": self.history,
        }


def train_detector(
    photos: Sequence[LabelledPhoto],
    config: DetectorTrainConfig | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
    refresh: Callable[[], Sequence[LabelledPhoto]] | None = None,
    initial: FaceNet | None = None,
) -> TrainResult:
    """Train a :class:`FaceNet` from random weights on augmented pseudo-labelled photos.

    Args:
        photos: pseudo-labelled training photos (:func:`faceops.detector.data.label_photos`).
        config: the run's settings.
        progress: called after each epoch with that epoch's mean loss terms, learning rate and elapsed seconds.
        refresh: called before each epoch after the first for the photos to use from then on (pseudo-labelling
            still running beside training); a run with it is seeded but not reproducible.
        initial: a network to continue training (its width must match the config's); a new one otherwise.
    """
    config = config or DetectorTrainConfig()
    if not any(len(p.boxes) for p in photos):
        raise TrainingError("no photo has a face label: nothing to train the detector on")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    model = initial if initial is not None else FaceNet(width=config.width)
    augmenter = Augmenter(photos, size=config.size, mosaic=config.mosaic)
    criterion = DetectionLoss(config.loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    total_steps = config.epochs * config.steps_per_epoch
    step = 0
    result = TrainResult(model=model, config=config)
    start = time.perf_counter()
    try:
        model.train()
        for epoch in range(1, config.epochs + 1):
            sums: dict[str, float] = {}
            if refresh is not None and epoch > 1:
                augmenter.photos = list(refresh()) or augmenter.photos
            for _ in range(config.steps_per_epoch):
                done = _schedule_position(step, total_steps, time.perf_counter() - start, config.time_budget_s)
                if done >= 1.0:
                    break
                lr = _learning_rate(done, config.lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                step += 1
                images, targets = to_batch([augmenter.sample(rng) for _ in range(config.batch_size)])
                terms = criterion(model(images), targets)
                if not torch.isfinite(terms["total"]):
                    raise TrainingError(f"detector loss is not finite at epoch {epoch}: {terms}")
                optimizer.zero_grad(set_to_none=True)
                terms["total"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                optimizer.step()
                for key, value in terms.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
            if not sums:
                break  # the time budget ran out before this epoch's first step
            steps = config.steps_per_epoch if done < 1.0 else max(1, step - (epoch - 1) * config.steps_per_epoch)
            row = {"epoch": float(epoch), **{k: v / steps for k, v in sums.items()}}
            row["lr"] = lr
            row["seconds"] = round(time.perf_counter() - start, 1)
            row["photos"] = float(len(augmenter.photos))
            result.history.append(row)
            if progress:
                progress(row)
            if done >= 1.0:
                break
    finally:
        torch.set_num_threads(previous_threads)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def _schedule_position(step: int, total_steps: int, elapsed: float, budget: float | None) -> float:
    """How far the run is, 0 to 1: by steps, or by time when a time budget would end it first."""
    by_steps = step / total_steps
    return by_steps if budget is None else max(by_steps, elapsed / budget)


def _learning_rate(position: float, peak: float) -> float:
    """Linear warm-up over the first 5 % of the run, then a cosine down to 1 % of the peak."""
    if position < 0.05:
        return peak * (0.1 + 0.9 * position / 0.05)
    cosine = 0.5 * (1 + math.cos(math.pi * (position - 0.05) / 0.95))
    return peak * (0.01 + 0.99 * cosine)


def save_checkpoint(result: TrainResult, path: str | Path) -> Path:
    """Weights, architecture and run summary in one file, read back by :meth:`NetDetector.load`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "architecture": {"width": result.config.width},
        "state_dict": result.model.state_dict(),
        "summary": result.summary(),
    }
    torch.save(payload, path)
    return path
