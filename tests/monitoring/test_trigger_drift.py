"""The retraining trigger carries the drift into the run config: what training targets and what the gate judges."""

from __future__ import annotations

from faceops.monitoring.config import TriggerConfig
from faceops.monitoring.trigger import pipeline_arguments

from faceops.training.config import TrainConfig


def test_the_run_config_gets_the_drift_and_a_gate_on_the_drifted_conditions():
    arguments = {"run_config": {"seed": 3, "gate": {"max_tar_drop": 0.02}}, "shards": 2}
    drift = {"brightness_ratio": 0.35, "blur_ratio": 0.02, "drifted": ["brightness", "blur"]}
    out = pipeline_arguments(arguments, drift)
    assert out["shards"] == 2 and arguments["run_config"] == {"seed": 3, "gate": {"max_tar_drop": 0.02}}  # a copy
    run_config = out["run_config"]
    assert run_config["seed"] == 3 and run_config["drift"] == drift
    assert run_config["gate"]["max_tar_drop"] == 0.02  # the run's own tolerances are kept
    assert run_config["gate"]["robustness"]["conditions"] == ["underexposure", "gaussian_blur"]
    config = TrainConfig.model_validate(run_config)  # what the pipeline's steps parse
    assert config.drift is not None and config.drift.brightness_ratio == 0.35
    assert config.gate.robustness is not None and set(config.gate.robustness.severities) == {
        "underexposure",
        "gaussian_blur",
    }


def test_without_drift_or_with_targeting_off_the_arguments_are_unchanged():
    arguments = {"run_config": {"seed": 3}}
    assert pipeline_arguments(arguments, None) == arguments
    assert TriggerConfig().target_drift is True and TriggerConfig(target_drift=False).target_drift is False
    # a drift training cannot act on (sharper, a little brighter) adds the target but no gate conditions
    out = pipeline_arguments(arguments, {"brightness_ratio": 1.05, "blur_ratio": 1.2})
    assert out["run_config"]["drift"]["blur_ratio"] == 1.2 and "gate" not in out["run_config"]
