"""The training config: typed, unknown keys and bad values refused with the file and key named."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceops.errors import ConfigError
from faceops.training.config import TrainConfig, load_train_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["train.yaml", "train_smoke.yaml"])
def test_shipped_configs_load(name):
    config = load_train_config(CONFIGS / name)
    assert isinstance(config, TrainConfig)


def test_unknown_key_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("head_stage: {epochs: 2, lr: 0.01}\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*learning_rate"):
        load_train_config(path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("head_stage: {epochs: 2, lr: -1}", "head_stage.lr"),
        ("head: {type: cosface}", "head.type"),
        ("cut: mixed_6a", "cut"),
        ("head_stage: {epochs: 0, lr: 0.1}\nfinetune_stage: {epochs: 0, lr: 0.1}", "epochs"),
        ("evaluation: {target_far: 2}", "evaluation.target_far"),
        ("- just\n- a list", "mapping"),
    ],
)
def test_bad_values_are_refused_with_their_key(tmp_path, text, where):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_train_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_train_config(tmp_path / "nope.yaml")
