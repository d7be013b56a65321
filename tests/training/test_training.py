"""Training: head then last blocks on cached trunk activations, BatchNorm frozen, checkpoints and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faceops.errors import TrainingError
from faceops.evaluation.bundle import ModelBundle
from faceops.face.embedding import load_backbone
from faceops.training.config import AugmentConfig
from faceops.training.features import TrunkCache, augment_crop, module_order
from faceops.training.fit import ArcFaceHead, fit


def test_a_run_trains_both_stages_and_saves_a_loadable_bundle(trained, smoke_config):
    history = trained.report["history"]
    stages = [h["stage"] for h in history]
    assert stages[0] == "head" and "finetune" in stages
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    bundle = ModelBundle.load(trained.bundle_dir)
    opened = trained.report["models"]["finetuned"]["open_set"]
    assert bundle.threshold == pytest.approx(opened["threshold"])
    assert bundle.target_far == smoke_config.evaluation.target_far
    assert bundle.metadata["data_version"]["manifest_sha256"]
    assert not any(k.startswith("logits") for k in bundle.backbone.state_dict())  # the head was dropped


def test_only_the_tail_changes_and_batchnorm_statistics_stay_frozen(trained, smoke_config):
    pretrained, _ = load_backbone()
    tuned = ModelBundle.load(trained.bundle_dir).backbone
    before, after = pretrained.state_dict(), tuned.state_dict()
    trunk, tail = module_order(smoke_config.cut)
    for key in before:
        module = key.split(".")[0]
        if module in trunk or "running_" in key or "num_batches" in key:
            assert torch.equal(before[key], after[key]), key
    changed = [k for k in before if k.split(".")[0] in tail and not torch.equal(before[k], after[k])]
    best_epoch = int(np.argmin([h["val_loss"] for h in trained.report["history"]]))
    if trained.report["history"][best_epoch]["stage"] == "finetune":
        assert changed, "the fine-tune stage was the best but the tail did not change"


def test_plots_and_report_are_written(trained):
    names = {p.name for p in trained.plots}
    assert {
        "roc_open_set.png",
        "training_curves.png",
        "confusion_finetuned.png",
        "per_identity_finetuned.png",
    } <= names
    for path in trained.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((trained.output_dir / "report.json").read_text())
    closed = report["models"]["finetuned"]["closed_set"]
    assert 0 <= closed["accuracy"] <= 1 and len(closed["confusion_matrix"]) == closed["identities"]
    assert set(report["models"]["finetuned"]["open_set"]["tar_at_far"]) == {"0.1", "0.01"}


def test_resume_after_an_interruption_gives_the_same_model(
    smoke_config, preprocessed, trained, cache_dir, tmp_path, monkeypatch
):
    import faceops.training.fit as training

    def run(checkpoint, fail_at=None):
        model, _ = load_backbone()
        trunk = TrunkCache(cache_dir, model, smoke_config.cut, preprocessed.cache.config.fingerprint())
        calls = []
        real = training._validate

        def validate(*args, **kwargs):
            calls.append(1)
            if len(calls) == fail_at:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(training, "_validate", validate)
        try:
            state, _ = fit(model, preprocessed, smoke_config, trunk, "cpu", checkpoint)
        finally:
            monkeypatch.setattr(training, "_validate", real)
        return model, state

    straight, state = run(tmp_path / "a.pt")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b.pt", fail_at=4)  # dies in the 4th epoch (the first fine-tune epoch)
    resumed, resumed_state = run(tmp_path / "b.pt")
    assert [h["epoch"] for h in resumed_state.history] == [h["epoch"] for h in state.history]
    for key, value in straight.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key


def test_one_identity_is_not_enough(smoke_config, preprocessed):
    import dataclasses

    rows = [r for r in preprocessed.rows if r.identity == preprocessed.rows[0].identity or r.split == "test"]
    thin = dataclasses.replace(preprocessed, rows=rows, failed={})
    model, _ = load_backbone()
    trunk = TrunkCache(preprocessed.cache.root.parent, model, smoke_config.cut, "x")
    with pytest.raises(TrainingError, match="at least two identities"):
        fit(model, thin, smoke_config, trunk, "cpu")


def test_arcface_margin_lowers_only_the_true_class_logit():
    torch.manual_seed(0)
    head = ArcFaceHead(8, 3, scale=10.0, margin=0.3)
    x, target = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    plain, margin = head(x), head(x, target)
    mask = torch.nn.functional.one_hot(target, 3).bool()
    assert torch.all(margin[mask] < plain[mask]) and torch.equal(margin[~mask], plain[~mask])


def test_augmentation_is_seeded_and_changes_pixels(preprocessed):
    crop = preprocessed.crops([preprocessed.rows[0].sha256])[0]
    config = AugmentConfig(blur_prob=1.0)
    a = augment_crop(crop, config, np.random.default_rng(1))
    b = augment_crop(crop, config, np.random.default_rng(1))
    c = augment_crop(crop, config, np.random.default_rng(2))
    assert a.shape == crop.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c) and not np.array_equal(a, crop)
