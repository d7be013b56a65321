"""Data-parallel fine-tuning (torch DDP, gloo backend) of the tail and head on cached trunk activations.

Each of ``workers`` processes holds a replica of the trainable tail (e.g. ``block8`` + ``last_linear`` +
``last_bn``) and of the classification head. Every epoch draws one permutation (and one view per image) from a
seed shared by all ranks; rank ``r`` trains on items ``r, r + W, r + 2W, ...`` of it with a per-rank batch of
``batch_size / W``, and DDP averages the gradients: one step sees the same global batch as one process.
Validation runs on the whole validation set on every rank, so early stopping decides alike everywhere and all
ranks end with the same weights. On a cluster the ranks would be pods (torchrun / a PyTorchJob); here they are
processes of one machine, which shows the mechanics with CPU processes.

Like :func:`faceops.training.fit.fit`, the network stays in eval mode (BatchNorm is folded into the weights).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from faceops.errors import TrainingError
from faceops.training.config import TrainConfig
from faceops.training.features import module_order, run_tail
from faceops.training.fit import TrainState, improved, make_head, training_set

__all__ = ["ddp_train", "fit_ddp", "run_training_ddp"]


class _TailHead(nn.Module):
    """The trainable tail of the backbone and the head, as one module for DDP."""

    def __init__(self, backbone: nn.Module, cut: str, head: nn.Module) -> None:
        super().__init__()
        self.cut, self.names = cut, module_order(cut)[1]
        self.tail = nn.ModuleDict({n: getattr(backbone, n) for n in self.names})
        self.head = head

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return run_tail(_Holder(self.tail), self.cut, x.float())

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x), target)


class _Holder:
    """Gives ``run_tail`` attribute access to the tail modules."""

    def __init__(self, modules: nn.ModuleDict) -> None:
        self.__dict__.update(dict(modules.items()))


def _tail_state(net: _TailHead) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.detach().clone() for n in net.names for k, v in net.tail[n].state_dict().items()}


def _worker(rank: int, world: int, init_file: str, payload_path: str, out_dir: str) -> None:
    """One rank: train both stages, write its final and best weights to ``<out_dir>/rank<r>.pt``."""
    from faceops.face.embedding import load_backbone

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        data = torch.load(payload_path, weights_only=False)
        config = TrainConfig.model_validate(data["config"])
        backbone, _ = load_backbone()
        backbone.eval()
        backbone.load_state_dict(data["tail"], strict=False)
        torch.manual_seed(config.seed)  # identical head initialisation on every rank
        net = _TailHead(backbone, config.cut, make_head(config.head, data["classes"]))
        state = TrainState()
        state.best_tail = _tail_state(net)
        for stage, stage_config in (("head", config.head_stage), ("finetune", config.finetune_stage)):
            _stage(net, stage, stage_config.epochs, stage_config.lr, data, config, state, rank, world)
        final = {"tail": _tail_state(net), "head": {k: v.clone() for k, v in net.head.state_dict().items()}}
        torch.save({"final": final, "state": state}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _stage(
    net: _TailHead,
    stage: str,
    epochs: int,
    lr: float,
    data: dict[str, Any],
    config: TrainConfig,
    state: TrainState,
    rank: int,
    world: int,
) -> None:
    finetune = stage == "finetune"
    net.tail.requires_grad_(finetune)
    model = nn.parallel.DistributedDataParallel(net)  # rebuilt per stage: the trainable parameters change
    groups = [{"params": list(net.head.parameters()), "lr": lr * (10 if finetune else 1)}]
    if finetune:
        groups.append({"params": list(net.tail.parameters()), "lr": lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    pool, y = data["pool"], data["y"]
    usable = (len(y) // world) * world  # equal shards: every rank takes the same number of steps
    if usable == 0:
        raise TrainingError(f"{len(y)} training images cannot be split over {world} workers")
    per_rank = max(1, math.ceil(config.batch_size / world))
    generator = torch.Generator().manual_seed(config.seed * 1000 + (1 if finetune else 0))
    state.stale = 0
    for epoch in range(epochs):
        order = torch.randperm(len(y), generator=generator)[:usable]
        view = torch.randint(len(pool), (len(y),), generator=generator)
        mine = order[rank::world]
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, images of this rank
        for b in range(0, len(mine), per_rank):
            idx = mine[b : b + per_rank]
            logits = model(pool[view[idx], idx], y[idx])
            loss = F.cross_entropy(logits, y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                correct = (net.head(net.embed(pool[view[idx], idx])).argmax(1) == y[idx]).sum()
            totals += torch.tensor([loss.item() * len(idx), float(correct), len(idx)], dtype=torch.float64)
        schedule.step()
        dist.all_reduce(totals)  # over all ranks: every rank's history holds the same figures
        val_loss, val_acc = _validate(net, data["val_x"], data["val_y"])
        state.history.append(
            {
                "stage": stage,
                "epoch": epoch + 1,
                "train_loss": float(totals[0] / totals[2]),
                "train_acc": float(totals[1] / totals[2]),
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": optimizer.param_groups[-1]["lr"],
                "workers": world,
            }
        )
        if improved(val_loss, state.best_loss, config.min_delta):
            state.best_loss, state.stale, state.best_tail = val_loss, 0, _tail_state(net)
        else:
            state.stale += 1
        if state.stale >= config.patience:
            break


@torch.inference_mode()
def _validate(net: _TailHead, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    emb = net.embed(x)
    return float(F.cross_entropy(net.head(emb, y), y)), float((net.head(emb).argmax(1) == y).float().mean())


def ddp_train(
    pool: torch.Tensor,
    y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    tail: dict[str, torch.Tensor],
    classes: int,
    config: TrainConfig,
    workers: int,
    out_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Train on cached activations with ``workers`` DDP processes; returns each rank's result.

    Args:
        pool: (views, N, ...) trunk activations of the training images; y: their class indices.
        val_x, val_y: activations and classes of the validation images.
        tail: the backbone tail's starting weights (``<module>.<param>`` keys).
        classes: the number of classes of the head.
        out_dir: where the ranks write ``rank<r>.pt`` (default: a temporary folder).

    Returns:
        per rank: ``final`` (tail and head weights) and ``state`` (:class:`TrainState`: history, best tail).
    """
    if workers < 2:
        raise TrainingError("data-parallel training needs at least 2 workers")
    with contextlib.ExitStack() as stack:
        out = Path(out_dir) if out_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        out.mkdir(parents=True, exist_ok=True)
        payload = out / "payload.pt"
        torch.save(
            {
                "pool": pool,
                "y": y,
                "val_x": val_x,
                "val_y": val_y,
                "tail": tail,
                "classes": classes,
                "config": config.model_dump(mode="json"),
            },
            payload,
        )
        init_file = out / "rendezvous"
        init_file.unlink(missing_ok=True)
        torch.multiprocessing.spawn(
            _worker, args=(workers, str(init_file), str(payload), str(out)), nprocs=workers, join=True
        )
        return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(workers)]


def fit_ddp(
    model: nn.Module,
    pre: Any,
    config: TrainConfig,
    trunk: Any,
    device: str,
    checkpoint: Path | None = None,
    *,
    workers: int = 2,
) -> tuple[TrainState, list[str]]:
    """:func:`faceops.training.fit.fit` with the epochs run by ``workers`` DDP processes (no checkpoint)."""
    ts = training_set(pre, config, trunk)
    tail = {
        f"{n}.{k}": v for n in module_order(config.cut)[1] for k, v in getattr(model, n).state_dict().items()
    }
    ranks = ddp_train(ts.pool, ts.y, ts.val_x, ts.val_y, tail, len(ts.classes), config, workers)
    state: TrainState = ranks[0]["state"]
    model.load_state_dict(state.best_tail or ranks[0]["final"]["tail"], strict=False)
    state.done = True
    return state, ts.classes


def run_training_ddp(config: TrainConfig, workers: int, cache_dir: Path) -> Any:
    """:func:`faceops.training.run.run_training` (no MLflow) with its fitting done by :func:`fit_ddp`;
    ``cache_dir`` is the crop and trunk cache root."""
    from functools import partial

    from faceops.training.run import run_training

    return run_training(
        config, log_to_mlflow=False, fit_fn=partial(fit_ddp, workers=workers), cache_dir=cache_dir
    )
