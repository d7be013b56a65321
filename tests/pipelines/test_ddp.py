"""Data-parallel training (torch DDP, gloo): two CPU processes train the tail and head and end identical."""

from __future__ import annotations

import pytest
import torch

# Two processes each load the backbone: over a minute on a busy 2-core machine.
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tail() -> dict[str, torch.Tensor]:
    from faceops.face.embedding import load_backbone
    from faceops.training.features import module_order

    backbone, _ = load_backbone()
    return {
        f"{n}.{k}": v.clone()
        for n in module_order("block8")[1]
        for k, v in getattr(backbone, n).state_dict().items()
    }


def test_two_ranks_end_with_identical_weights(tail: dict[str, torch.Tensor], tmp_path) -> None:
    from faceops.training.config import TrainConfig
    from faceops.training.ddp import ddp_train

    # Cached trunk activations at the block8 cut (1792 x 3 x 3), 4 identities; 2 views (clean + mirror).
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 1792, 3, 3, generator=gen)
    y = torch.arange(24) % 4
    pool = torch.stack(
        [centres[y] + 0.5 * torch.randn(24, 1792, 3, 3, generator=gen) for _ in range(2)]
    ).half()
    val_y = torch.arange(8) % 4
    val_x = (centres[val_y] + 0.5 * torch.randn(8, 1792, 3, 3, generator=gen)).half()
    config = TrainConfig.model_validate(
        {
            "head_stage": {"epochs": 1, "lr": 0.01},
            "finetune_stage": {"epochs": 1, "lr": 0.001},
            "batch_size": 8,
            "augment": {"copies": 0},
            "patience": 5,
        }
    )
    ranks = ddp_train(pool, y, val_x, val_y, tail, 4, config, workers=2, out_dir=tmp_path)

    assert len(ranks) == 2
    first, second = ranks[0]["final"], ranks[1]["final"]
    for part in ("tail", "head"):
        assert first[part].keys() == second[part].keys()
        for key in first[part]:
            assert torch.equal(first[part][key], second[part][key]), f"{part} {key} differs between ranks"
    # the fine-tuning stage really moved the tail, and both stages ran on both ranks
    assert any(not torch.equal(first["tail"][k], tail[k]) for k in tail)
    history = ranks[0]["state"].history
    assert [h["stage"] for h in history] == ["head", "finetune"] and history[0]["workers"] == 2
    assert history == ranks[1]["state"].history
    # the same figures as single-process training, so the training-curve plot reads them alike
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr"} <= set(history[0])


def test_one_worker_is_refused(tail: dict[str, torch.Tensor]) -> None:
    from faceops.errors import TrainingError
    from faceops.training.config import TrainConfig
    from faceops.training.ddp import ddp_train

    with pytest.raises(TrainingError, match="at least 2 workers"):
        ddp_train(
            torch.zeros(1, 2, 1), torch.zeros(2), torch.zeros(1), torch.zeros(1), tail, 2, TrainConfig(), 1
        )
