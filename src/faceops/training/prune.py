"""Structured channel pruning of a PyTorch embedder, then a short distillation against the unpruned network.

1. **Pruning** (:func:`prune_channels`): torch-pruning's dependency graph finds the channels that must go
   together (a conv's outputs, the BatchNorm after it, every consumer's inputs; across a residual addition the
   whole residual stream of InceptionResnetV1's blocks is one group), and :class:`torch_pruning.pruner.BasePruner`
   removes the ``sparsity`` fraction of each group with the smallest L2 magnitude of their conv/linear weights.
   The last linear layer keeps its outputs, so the embedding size (512) and ``last_bn`` are unchanged; only real
   channels are removed (the network gets smaller and cheaper, not sparse). By default the residual stream (the
   256/896/1792 channels that every block adds to) is kept whole and only the stem and the inner branch
   channels of the blocks are pruned: pruning the stream too changes the input of every block at once (at
   sparsity 0.25 the embeddings then keep a cosine of about 0.08 with the unpruned ones before distillation).
   The stem (the convolutions before the first residual block: 32, 32, 64, 80, 192 channels) is kept whole by
   default too: it is narrow and every later layer depends on it, and pruning it by magnitude takes the face out
   of the features. At sparsity 0.4 (its 32-channel layers cut to 16; at 0.55, with ``round_to`` 8, to 8) the
   pruned network's embeddings barely vary across faces (a tenth of the unpruned network's spread), and
   distillation then settles on one constant embedding, the teacher's mean direction (loss ``1 - |mean
   target|``, whatever the sparsity; LFW accuracy near chance). With the stem whole, pruning the blocks alone
   at 0.4 or 0.55 removes about as many parameters, the embeddings keep their spread through the first
   distillation steps and the held-out loss falls.
2. **Distillation** (:func:`distill`): the pruned student learns to give the teacher's embeddings on aligned face
   crops: loss ``1 - cos(student(x), teacher(x))``, teacher fixed, both in eval mode (BatchNorm is folded into
   the pretrained convs: batch statistics would shift every layer; dropout would only add noise). A random
   mirror of each crop per epoch; Adam with a cosine learning-rate schedule; seeded. A held-out share of the
   crops measures the loss before and after each epoch, and the best state is kept.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from faceops.errors import ConfigError, TrainingError
from faceops.face.config import StrictConfig

__all__ = ["PruneConfig", "PruneReport", "count_macs", "distill", "prune_and_distill", "prune_channels"]

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class PruneConfig(StrictConfig):
    """How much to prune and how long to distil."""

    sparsity: float = Field(default=0.25, gt=0, lt=1, description="Share of the channels of each group removed.")
    round_to: int | None = Field(default=8, ge=1, description="Keep channel counts multiples of this (SIMD).")
    keep_residual_stream: bool = Field(
        default=True, description="Prune only channels inside the residual blocks and the stem, not the stream."
    )
    keep_stem: bool = Field(
        default=True, description="Keep the convolutions before the first residual block whole (pruning them collapses "
        "the embeddings from sparsity 0.4 on)."
    )
    epochs: int = Field(default=3, ge=0, description="Distillation epochs over the crops (0: prune only).")
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=3e-4, gt=0, description="Adam's peak learning rate (cosine decay to 0).")
    weight_decay: float = Field(default=0.0, ge=0)
    heldout_fraction: float = Field(
        default=0.1, ge=0, lt=1, description="Crops kept out of training to measure the loss (0: measure on all)."
    )
    mirror: bool = Field(default=True, description="Mirror each training crop with probability 1/2 per epoch.")
    seed: int = 0


@dataclass
class PruneReport:
    """What pruning and distillation did (figures for the bundle's metadata and MLflow)."""

    sparsity: float
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    crops_train: int = 0
    crops_heldout: int = 0
    epochs: int = 0
    loss_before: float = float("nan")
    loss_after: float = float("nan")
    epoch_losses: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    prune_s: float = 0.0
    distill_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def count_macs(module: nn.Module, input_size: int) -> int:
    """Multiply-accumulates of one forward pass of one ``input_size`` crop (convolutions and linear layers)."""
    total = 0

    def _hook(layer: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Conv2d):
            kh, kw = layer.kernel_size
            total += int(output.numel()) * (layer.in_channels // layer.groups) * kh * kw
        elif isinstance(layer, nn.Linear):
            total += int(output.numel()) * layer.in_features

    handles = [m.register_forward_hook(_hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = module.training
    try:
        with torch.inference_mode():
            module.eval()(torch.zeros(1, 3, input_size, input_size))
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def _parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _embedding_layer(module: nn.Module) -> nn.Module:
    """The layer whose outputs are the embedding (kept whole)."""
    last = getattr(module, "last_linear", None)  # InceptionResnetV1
    if isinstance(last, nn.Linear):
        return last
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("channel pruning needs an embedder that ends in a linear layer (InceptionResnetV1)")
    return linears[-1]


def check_sparsity(sparsity: float) -> float:
    """``sparsity`` if it is a share strictly between 0 and 1.

    Raises:
        ConfigError: it is not.
    """
    if not isinstance(sparsity, (int, float)) or not 0 < float(sparsity) < 1:
        raise ConfigError(f"sparsity must be a share of channels strictly between 0 and 1, not {sparsity!r}")
    return float(sparsity)


def _stream_writers(module: nn.Module) -> list[nn.Module]:
    """The 1x1 convolutions whose outputs a residual block adds to its input (InceptionResnetV1's ``Block35``,
    ``Block17``, ``Block8``): ignoring them keeps every group of residual-stream channels whole."""
    writers: list[nn.Module] = []
    for block in module.modules():
        conv = getattr(block, "conv2d", None)
        if hasattr(block, "scale") and isinstance(conv, nn.Conv2d):
            writers.append(conv)
    return writers


def _stem(module: nn.Module) -> list[nn.Module]:
    """The convolutions registered before the first residual block (InceptionResnetV1's ``conv2d_1a`` ... ``conv2d_4b``,
    in the order they run); none when the network has no such block."""
    stem: list[nn.Module] = []
    for layer in module.modules():
        if hasattr(layer, "scale") and isinstance(getattr(layer, "conv2d", None), nn.Conv2d):
            return stem
        if isinstance(layer, nn.Conv2d):
            stem.append(layer)
    return []


def prune_channels(
    module: nn.Module,
    sparsity: float,
    input_size: int = 160,
    round_to: int | None = 8,
    keep_residual_stream: bool = True,
    keep_stem: bool = True,
) -> nn.Module:
    """A copy of ``module`` with ``sparsity`` of the channels of each dependency group removed (L2 magnitude).

    ``keep_residual_stream`` and ``keep_stem`` leave the residual stream and the convolutions before the first
    residual block whole (see the module's notes).

    Raises:
        ConfigError: ``sparsity`` is not strictly between 0 and 1, or the network has no final linear layer.
        TrainingError: torch-pruning failed on this network, or the pruned one lost its embedding size.
    """
    import torch_pruning as tp

    sparsity = check_sparsity(sparsity)
    student = copy.deepcopy(module).cpu().eval()
    keep = _embedding_layer(student)
    dim = keep.out_features  # type: ignore[union-attr]
    example = torch.zeros(1, 3, input_size, input_size)
    importance = tp.importance.GroupMagnitudeImportance(p=2, target_types=[nn.modules.conv._ConvNd, nn.Linear])
    try:
        pruner = tp.pruner.BasePruner(
            student,
            example,
            importance=importance,
            pruning_ratio=sparsity,
            ignored_layers=[
                keep,
                *(_stream_writers(student) if keep_residual_stream else []),
                *(_stem(student) if keep_stem else []),
            ],
            round_to=round_to,
        )
        pruner.step()
        with torch.inference_mode():
            out = student(example)
    except Exception as exc:  # noqa: BLE001 - torch-pruning fails in many ways on an unsupported graph
        raise TrainingError(f"channel pruning failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
    if out.shape != (1, dim):
        raise TrainingError(f"the pruned network gives {tuple(out.shape)} embeddings, not (1, {dim})")
    for param in student.parameters():
        param.requires_grad_(True)
    return student


def _embed(module: nn.Module, crops: torch.Tensor, batch_size: int) -> torch.Tensor:
    with torch.no_grad():  # not inference_mode: the teacher's embeddings are used as targets under autograd
        return torch.cat([F.normalize(module(crops[i : i + batch_size]), dim=1) for i in range(0, len(crops), batch_size)])


def _loss(module: nn.Module, crops: torch.Tensor, targets: torch.Tensor, batch_size: int) -> float:
    """Mean ``1 - cos`` between the module's embeddings and the (normalised) targets."""
    got = _embed(module, crops, batch_size)
    return float((1 - (got * targets).sum(dim=1)).mean())


def distill(
    student: nn.Module,
    teacher: nn.Module,
    crops: np.ndarray,
    config: PruneConfig,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train ``student`` in place to give ``teacher``'s embeddings on ``crops`` (normalised, ``(n, 3, S, S)``).

    Returns:
        ``crops_train``, ``crops_heldout``, ``epochs``, ``loss_before``, ``loss_after`` (held-out crops, or all
        crops when none are held out), ``epoch_losses`` (train and held-out loss of each epoch) and
        ``best_epoch`` (0: the pruned network before training was best, so it is returned unchanged).

    Raises:
        TrainingError: no crops to train on.
    """
    say = progress or (lambda line: log.info("%s", line))
    if len(crops) == 0:
        raise TrainingError("distillation needs face crops: none were given")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    pixels = torch.as_tensor(np.ascontiguousarray(crops), dtype=torch.float32)
    order = torch.randperm(len(pixels), generator=generator)
    n_held = int(round(config.heldout_fraction * len(pixels))) if len(pixels) > 1 else 0
    held, train = pixels[order[:n_held]], pixels[order[n_held:]]
    measure = held if n_held else train
    teacher = teacher.cpu().eval()
    student.cpu().eval()  # BatchNorm folded, dropout off: eval mode while training too
    targets = {False: _embed(teacher, train, config.batch_size)}
    if config.mirror:
        targets[True] = _embed(teacher, train.flip(3), config.batch_size)
    measure_targets = _embed(teacher, measure, config.batch_size) if n_held else targets[False]
    best = before = _loss(student, measure, measure_targets, config.batch_size)
    best_state, best_epoch = copy.deepcopy(student.state_dict()), 0
    say(f"distillation: {len(train)} training crops, {n_held} held out; loss before {before:.4f}")
    report: dict[str, Any] = {"crops_train": len(train), "crops_heldout": n_held, "epochs": config.epochs,
                              "loss_before": before, "epoch_losses": []}
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = max(steps_per_epoch * config.epochs, 1)
    optimizer = torch.optim.Adam(
        [p for p in student.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    for epoch in range(1, config.epochs + 1):
        start, seen, summed = time.perf_counter(), 0, 0.0
        permutation = torch.randperm(len(train), generator=generator)
        flips = torch.rand(len(train), generator=generator) < 0.5 if config.mirror else torch.zeros(len(train), dtype=torch.bool)
        for first in range(0, len(train), config.batch_size):
            index = permutation[first : first + config.batch_size]
            flip = flips[index]
            batch = torch.where(flip[:, None, None, None], train[index].flip(3), train[index])
            target = torch.where(flip[:, None], targets.get(True, targets[False])[index], targets[False][index])
            loss = (1 - (F.normalize(student(batch), dim=1) * target).sum(dim=1)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(index)
            summed += float(loss.detach()) * len(index)
        measured = _loss(student, measure, measure_targets, config.batch_size)
        report["epoch_losses"].append({"epoch": epoch, "train": summed / seen, "heldout": measured})
        say(f"distillation epoch {epoch}/{config.epochs}: train loss {summed / seen:.4f}, "
            f"{'held-out' if n_held else 'measured'} loss {measured:.4f} ({time.perf_counter() - start:.0f} s)")
        if measured < best:
            best, best_state, best_epoch = measured, copy.deepcopy(student.state_dict()), epoch
    student.load_state_dict(best_state)
    student.eval()
    report.update(loss_after=best, best_epoch=best_epoch)
    return report


def prune_and_distill(
    module: nn.Module,
    crops: np.ndarray,
    config: PruneConfig,
    input_size: int = 160,
    progress: Progress | None = None,
) -> tuple[nn.Module, PruneReport]:
    """Prune a copy of ``module`` (:func:`prune_channels`) and distil it from ``module`` on ``crops``.

    Returns:
        the pruned, distilled network (eval mode; ``module`` is untouched) and the report.
    """
    say = progress or (lambda line: log.info("%s", line))
    teacher = module.cpu().eval()
    start = time.perf_counter()
    say(f"pruning {config.sparsity:g} of the channels of each group (torch-pruning, L2 magnitude)")
    student = prune_channels(
        teacher, config.sparsity, input_size, config.round_to, config.keep_residual_stream, config.keep_stem
    )
    report = PruneReport(
        sparsity=config.sparsity,
        params_before=_parameters(teacher),
        params_after=_parameters(student),
        macs_before=count_macs(teacher, input_size),
        macs_after=count_macs(student, input_size),
        prune_s=time.perf_counter() - start,
    )
    say(f"pruned: {report.params_before / 1e6:.1f}M -> {report.params_after / 1e6:.1f}M parameters, "
        f"{report.macs_before / 1e9:.2f} -> {report.macs_after / 1e9:.2f} GMAC per face")
    if config.epochs:
        start = time.perf_counter()
        facts = distill(student, teacher, crops, config, say)
        for key, value in facts.items():
            setattr(report, key, value)
        report.distill_s = time.perf_counter() - start
    return student, report
