"""Transfer learning of InceptionResnetV1 on cached trunk activations: a head first, then the last block(s).

The trunk up to ``config.cut`` is frozen and runs once per (crop, view) (:mod:`faceops.training.features`);
training then touches only the tail (e.g. ``block8`` + ``last_linear`` + ``last_bn``) and a classification
head over the training identities (softmax, or ArcFace's additive angular margin), which is dropped
afterwards.

1. **Head stage**: the tail is frozen too, so its embeddings are computed once and the head trains on them.
2. **Fine-tune stage**: the tail is unfrozen at a lower learning rate, the head keeps training (10x that
   rate).

The whole network stays in eval mode: the pretrained weights have BatchNorm folded into them (train-mode batch
statistics would shift every layer) and dropout would only add noise to a small head. Each epoch draws one
view per training image (clean, mirrored or an augmented copy). Each stage has a cosine learning-rate
schedule and early stopping on the validation loss; the best state of the run is kept, so a fine-tune stage
that never beats the head stage leaves the pretrained embedder untouched. A checkpoint after every epoch
makes runs resumable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from faceops.data.crops import PreprocessResult
from faceops.errors import TrainingError
from faceops.evaluation.evaluate import EvalSet
from faceops.training.config import HeadConfig, StageConfig, TrainConfig
from faceops.training.features import TrunkCache, module_order, run_tail

__all__ = ["ArcFaceHead", "TrainState", "TrainingSet", "fit", "improved", "make_head", "seed_everything", "training_set"]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class ArcFaceHead(nn.Module):
    """Additive angular margin (ArcFace): logits ``s * cos(theta + m)`` for the true class, ``s * cos``
    otherwise."""

    def __init__(self, dim: int, classes: int, scale: float, margin: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.scale, self.margin = scale, margin

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        cos = F.linear(F.normalize(x), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        if target is None:
            return self.scale * cos
        theta = torch.acos(cos)
        one_hot = F.one_hot(target, cos.shape[1]).bool()
        return self.scale * torch.where(one_hot, torch.cos(theta + self.margin), cos)


class _Linear(nn.Linear):
    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:  # noqa: ARG002
        return super().forward(x)


def improved(loss: float, best: float, min_delta: float) -> bool:
    """Whether ``loss`` beats ``best`` by more than the relative ``min_delta`` (losses near 0 still count)."""
    return loss < best * (1.0 - min_delta)


def make_head(config: HeadConfig, classes: int, dim: int = 512) -> nn.Module:
    return (
        ArcFaceHead(dim, classes, config.scale, config.margin)
        if config.type == "arcface"
        else _Linear(dim, classes)
    )


@dataclass
class TrainState:
    """Everything a checkpoint holds."""

    stage: str = "head"
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = math.inf
    best_tail: dict[str, torch.Tensor] | None = None
    stale: int = 0
    done: bool = False
    optimizer: dict[str, Any] | None = field(default=None, repr=False)


def _tail_modules(model: nn.Module, cut: str) -> list[nn.Module]:
    return [getattr(model, name) for name in module_order(cut)[1]]


def _tail_state(model: nn.Module, cut: str) -> dict[str, torch.Tensor]:
    return {
        f"{n}.{k}": v.detach().clone().cpu()
        for n in module_order(cut)[1]
        for k, v in getattr(model, n).state_dict().items()
    }


def _load_tail(model: nn.Module, cut: str, state: dict[str, torch.Tensor]) -> None:
    for name in module_order(cut)[1]:
        prefix = name + "."
        getattr(model, name).load_state_dict(
            {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        )


def _config_key(config: TrainConfig, classes: list[str], n_train: int) -> str:
    text = config.model_dump_json(exclude={"output_dir", "mlflow", "lfw_pairs", "gate", "evaluation"})
    return hashlib.sha256(f"{text}|{classes}|{n_train}".encode()).hexdigest()[:16]


@dataclass
class TrainingSet:
    """What the tail is trained on: the classes, the trunk activations of every training view
    (``pool``: views x images x ...), their labels, and the clean val activations with theirs."""

    classes: list[str]
    pool: torch.Tensor
    y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor


def training_set(pre: PreprocessResult, config: TrainConfig, trunk: TrunkCache) -> TrainingSet:
    """The classes (train identities with enough faces) and their cached trunk activations.

    Raises:
        TrainingError: fewer than two classes, or no val images of them.
    """
    data = EvalSet.from_preprocessed(pre)
    counts: dict[str, int] = {}
    for identity in data.identities["train"]:
        counts[identity] = counts.get(identity, 0) + 1
    classes = sorted(k for k, v in counts.items() if v >= config.min_images_per_identity)
    if len(classes) < 2:
        raise TrainingError(
            f"training needs at least two identities with >= {config.min_images_per_identity} "
            f"train images with a face; the data version has {len(classes)}"
        )
    index = {name: i for i, name in enumerate(classes)}
    train = [
        (s, index[i]) for s, i in zip(data.shas["train"], data.identities["train"], strict=True) if i in index
    ]
    val = [(s, index[i]) for s, i in zip(data.shas["val"], data.identities["val"], strict=True) if i in index]
    if not val:
        raise TrainingError("no val images of the training identities: early stopping has nothing to watch")
    views = ["clean", "flip", *(f"aug-{k}" for k in range(config.augment.copies))]
    shas = [s for s, _ in train]
    pool = torch.stack(
        [trunk.features(shas, pre.crops, v, config.augment, config.seed, desc="train") for v in views]
    )
    val_x = trunk.features([s for s, _ in val], pre.crops, "clean", desc="val")
    return TrainingSet(
        classes, pool, torch.tensor([c for _, c in train]), val_x, torch.tensor([c for _, c in val])
    )


def fit(
    model: nn.Module,
    pre: PreprocessResult,
    config: TrainConfig,
    trunk: TrunkCache,
    device: str,
    checkpoint: Path | None = None,
) -> tuple[TrainState, list[str]]:
    """Train the tail of ``model`` in place on a preprocessed data version; returns the state and the
    classes."""
    seed_everything(config.seed)
    ts = training_set(pre, config, trunk)
    classes, pool, y, val_x, val_y = ts.classes, ts.pool, ts.y, ts.val_x, ts.val_y

    model.eval().to(device)
    head = make_head(config.head, len(classes)).to(device)
    state, key = TrainState(), _config_key(config, classes, len(y))
    if checkpoint and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if saved.get("key") == key:
            state = saved["state"]
            state.optimizer = saved.get("optimizer")
            head.load_state_dict(saved["head"])
            _load_tail(model, config.cut, saved["tail"])
            log.info("resuming from %s (stage %s, epoch %d)", checkpoint, state.stage, state.epoch)
        else:
            log.warning("ignoring checkpoint %s: it was made with another config or data", checkpoint)
    if state.best_tail is None:
        state.best_tail = _tail_state(model, config.cut)
    for stage, stage_config in (("head", config.head_stage), ("finetune", config.finetune_stage)):
        if state.done or (stage == "head" and state.stage == "finetune"):
            continue
        _run_stage(
            stage, stage_config, model, head, pool, y, val_x, val_y, config, state, device, checkpoint, key
        )
    state.done = True
    _load_tail(model, config.cut, state.best_tail)
    _save_checkpoint(checkpoint, key, state, model, head, config.cut)
    return state, classes


def _embed(model: nn.Module, cut: str, x: torch.Tensor, device: str, grad: bool) -> torch.Tensor:
    with torch.set_grad_enabled(grad):
        return run_tail(model, cut, x.float().to(device))


def _run_stage(
    stage: str,
    stage_config: StageConfig,
    model: nn.Module,
    head: nn.Module,
    pool: torch.Tensor,
    y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    config: TrainConfig,
    state: TrainState,
    device: str,
    checkpoint: Path | None,
    key: str,
) -> None:
    tail = _tail_modules(model, config.cut)
    finetune = stage == "finetune"
    for module in tail:
        module.requires_grad_(finetune)
    groups = [{"params": list(head.parameters()), "lr": stage_config.lr * (10 if finetune else 1)}]
    if finetune:
        groups.append({"params": [p for m in tail for p in m.parameters()], "lr": stage_config.lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    epochs = stage_config.epochs
    start = state.epoch if state.stage == stage else 0
    if state.stage != stage:
        state.stage, state.epoch, state.stale = stage, 0, 0
    elif state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)

    def factor(step: int) -> float:  # cosine annealing to 0 over the stage, counted from its first epoch
        if config.schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(step + start, epochs) / max(epochs, 1)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    frozen = (
        None
        if finetune
        else torch.stack([_embed(model, config.cut, v, device, False) for v in pool]).detach()
    )
    generator = torch.Generator().manual_seed(config.seed * 1000 + (1 if finetune else 0))
    for _ in range(state.epoch):  # replay the draws of finished epochs so a resumed run sees the same batches
        torch.randperm(len(y), generator=generator), torch.randint(len(pool), (len(y),), generator=generator)
    for epoch in range(start, epochs):
        order = torch.randperm(len(y), generator=generator)
        view = torch.randint(len(pool), (len(y),), generator=generator)
        losses, correct = [], 0
        for b in range(0, len(y), config.batch_size):
            idx = order[b : b + config.batch_size]
            target = y[idx].to(device)
            x = (
                frozen[view[idx], idx]
                if frozen is not None
                else _embed(model, config.cut, pool[view[idx], idx], device, True)
            )
            logits = head(x, target)
            loss = F.cross_entropy(logits, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item() * len(idx))
            correct += int((head(x.detach()).argmax(1) == target).sum())
        schedule.step()
        val_loss, val_acc = _validate(model, head, val_x, val_y, config, device)
        state.epoch = epoch + 1
        state.history.append(
            {
                "stage": stage,
                "epoch": epoch + 1,
                "train_loss": sum(losses) / len(y),
                "train_acc": correct / len(y),
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": optimizer.param_groups[-1]["lr"],
            }
        )
        log.info("%s epoch %d: %s", stage, epoch + 1, state.history[-1])
        if improved(val_loss, state.best_loss, config.min_delta):
            state.best_loss, state.stale = val_loss, 0
            state.best_tail = _tail_state(model, config.cut)
        else:
            state.stale += 1
        state.optimizer = optimizer.state_dict()
        _save_checkpoint(checkpoint, key, state, model, head, config.cut)
        if state.stale >= config.patience:
            log.info("%s: early stop after epoch %d", stage, epoch + 1)
            break
    state.stale = 0  # the next stage starts afresh, judged against the best loss so far


@torch.inference_mode()
def _validate(
    model: nn.Module, head: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, device: str
) -> tuple[float, float]:
    total, correct = 0.0, 0
    for b in range(0, len(y), 256):
        target = y[b : b + 256].to(device)
        emb = run_tail(model, config.cut, x[b : b + 256].float().to(device))
        total += float(F.cross_entropy(head(emb, target), target, reduction="sum"))
        correct += int((head(emb).argmax(1) == target).sum())
    return total / len(y), correct / len(y)


def _save_checkpoint(
    path: Path | None, key: str, state: TrainState, model: nn.Module, head: nn.Module, cut: str
) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "key": key,
            "state": dataclasses.replace(state, optimizer=None),
            "optimizer": state.optimizer,
            "head": head.state_dict(),
            "tail": _tail_state(model, cut),
        },
        tmp,
    )
    tmp.replace(path)
