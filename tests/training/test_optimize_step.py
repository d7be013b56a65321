"""The pipeline's ``optimize`` step body: the champion's MobileFaceNet variant through the parity gate, registered
and promoted; real weights, real LFW photos (12 pairs of each of folds 1-4, target FAR 0.1: 24 impostors cannot
show 1e-3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faceops.errors import ModelNotFound
from faceops.evaluation.bundle import ModelBundle
from faceops.steps.optimize import optimize_champion

QUICK = {"lfw_folds": [1, 2, 3, 4], "pairs_per_fold": 12, "target_far": 0.1}


def test_the_mobilefacenet_variant_of_the_champion_is_admitted_and_promoted(
    local_store: str, lfw: Path, cache_dir: Path, tmp_path: Path
) -> None:
    from faceops import registry

    v1 = registry.log_bundle(ModelBundle.pretrained(), local_store)
    registry.set_alias(registry.CHAMPION, v1, "first champion", local_store)
    lines: list[str] = []
    outcome = optimize_champion(
        "mobilefacenet", cache_dir=cache_dir, out_dir=tmp_path / "out", tracking_uri=local_store,
        lfw_pairs=lfw / "pairs.txt", progress=lines.append, **QUICK,  # type: ignore[arg-type]
    )
    assert outcome["admitted"] and outcome["promoted"] and outcome["reasons"] == [], outcome
    assert outcome["champion_version"] == v1 and outcome["version"] != v1
    assert registry.alias_version(registry.CHAMPION, local_store) == outcome["version"]
    champion = registry.load_bundle("models:/faceops@champion", local_store)
    assert champion.family == "mobilefacenet" and champion.backend == "onnxruntime"
    assert champion.metadata["source_version"] == v1 and champion.metadata["method"] == "mobilefacenet"
    assert champion.threshold == pytest.approx(outcome["threshold"])
    history = registry.champion_history(local_store)
    assert [h["version"] for h in history] == [v1, outcome["version"]]
    assert "parity gate" in history[-1]["reason"]
    written = json.loads((tmp_path / "out" / "outcome.json").read_text())
    assert written["version"] == outcome["version"] and (tmp_path / "out" / "decision.json").is_file()
    assert outcome["variant_lfw"]["family"] == "mobilefacenet" and outcome["champion_lfw"]["images"] > 0
    assert any("now the champion" in line for line in lines)

    again = optimize_champion(
        "mobilefacenet", cache_dir=cache_dir, out_dir=tmp_path / "again", tracking_uri=local_store,
        lfw_pairs=lfw / "pairs.txt", **QUICK,  # type: ignore[arg-type]
    )
    assert not again["admitted"] and again["reasons"] == ["the champion is already a MobileFaceNet model"]
    assert sorted(v["version"] for v in registry.list_versions(local_store)) == sorted([v1, outcome["version"]])


def test_without_a_champion_nothing_is_built(local_store: str, lfw: Path, cache_dir: Path, tmp_path: Path) -> None:
    from faceops import registry

    with pytest.raises(ModelNotFound, match="no champion to optimise"):
        optimize_champion("mobilefacenet", cache_dir=cache_dir, out_dir=tmp_path, tracking_uri=local_store,
                          lfw_pairs=lfw / "pairs.txt", **QUICK)  # type: ignore[arg-type]
    assert registry.list_versions(local_store) == []


def test_what_the_gate_needs_but_is_missing_is_a_refusal_that_says_where(
    local_store: str, cache_dir: Path, tmp_path: Path
) -> None:
    from faceops import registry

    v1 = registry.log_bundle(ModelBundle.pretrained(), local_store)
    registry.set_alias(registry.CHAMPION, v1, "first champion", local_store)
    outcome = optimize_champion("mobilefacenet", cache_dir=cache_dir, out_dir=tmp_path, tracking_uri=local_store,
                                lfw_pairs=tmp_path / "nowhere" / "pairs.txt", **QUICK)  # type: ignore[arg-type]
    assert not outcome["admitted"] and outcome["version"] is None
    assert outcome["reasons"] == [f"LFW pairs not found at {tmp_path / 'nowhere' / 'pairs.txt'} (give the pipeline's "
                                  "optimize_lfw_pairs)"]
    assert [v["version"] for v in registry.list_versions(local_store)] == [v1]
    assert registry.alias_version(registry.CHAMPION, local_store) == v1


def test_a_bad_sparsity_fails_the_step_before_anything_is_built(local_store: str, lfw: Path, tmp_path: Path) -> None:
    from faceops import registry
    from faceops.errors import ConfigError

    v1 = registry.log_bundle(ModelBundle.pretrained(), local_store)
    registry.set_alias(registry.CHAMPION, v1, "first champion", local_store)
    with pytest.raises(ConfigError, match="sparsity must be a share of channels strictly between 0 and 1, not 1.5"):
        optimize_champion("prune", cache_dir=tmp_path, out_dir=tmp_path / "out", tracking_uri=local_store,
                          lfw_pairs=lfw / "pairs.txt", sparsity=1.5, epochs=2, **QUICK)  # type: ignore[arg-type]
    assert [v["version"] for v in registry.list_versions(local_store)] == [v1]


def test_both_pipelines_pass_a_sparsity_and_epochs_to_the_optimize_step(tmp_path: Path) -> None:
    import yaml
    from faceops.kfp.pipelines.run import compile_pipelines

    for name, path in compile_pipelines(tmp_path, names=["training", "retraining"]).items():
        spec = next(yaml.safe_load_all(path.read_text()))
        params = spec["root"]["inputDefinitions"]["parameters"]
        assert params["optimize_sparsity"]["parameterType"] == "NUMBER_DOUBLE", name
        assert params["optimize_epochs"]["parameterType"] == "NUMBER_INTEGER", name
        tasks = [t for c in spec["components"].values() if "dag" in c for t in c["dag"]["tasks"].values()]
        [step] = [t for t in tasks if t["taskInfo"]["name"] == "optimize"]
        inputs = step["inputs"]["parameters"]
        assert inputs["sparsity"]["componentInputParameter"] == "pipelinechannel--optimize_sparsity", name
        assert inputs["epochs"]["componentInputParameter"] == "pipelinechannel--optimize_epochs", name
