"""The promotion gate: the challenger replaces the champion only if it is not worse on the same data.

Both models are evaluated on the same data version at their own stored thresholds (the threshold each would
run with in production): closed-set accuracy may not drop by more than ``max_accuracy_drop`` and the FAR
measured at the threshold on held-out identities may not rise by more than ``max_far_increase``; the TAR at
the target FAR may not drop by more than ``max_tar_drop`` (so a challenger that does not help is refused) and
must reach ``min_tar_at_far``. When LFW pairs are configured, both models are also run through LFW's pairs
protocol on the pairs of people outside the data version's training identities, and the mean accuracy may not
drop by more than ``max_lfw_accuracy_drop``: a model that learnt its training people at the expense of
everyone else is refused. With ``robustness`` set, both models also run the robustness suite
(:mod:`faceops.evaluation.robustness`) on the configured conditions: on no condition may the TAR at the target FAR
drop, or the FRR at the model's own threshold rise, by more than the tolerances, and a condition with too few
pairs refuses (it cannot be judged). With ``groups`` set, no judged group's FRR may rise, nor the largest FRR gap
between groups grow, beyond the tolerances (groups too small to judge are named in the reason). The decision and
its reason are stored
on the challenger's model version (tag ``faceops.evaluation.gate``); a promotion moves ``champion`` and is appended to
the champion history.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faceops.errors import ModelNotFound
from faceops.training.config import EvalConfig, GateConfig, GroupGateConfig, LfwPairsConfig, RobustnessGateConfig

__all__ = [
    "GateDecision",
    "decide",
    "group_problems",
    "key_metrics",
    "robustness_problems",
    "run_gate",
    "same_model",
    "with_lfw",
]


@dataclass
class GateDecision:
    """The gate's verdict."""

    promoted: bool
    reason: str
    challenger: str | None = None
    champion: str | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def key_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The figures the gate compares, from one model's evaluation result (``closed_set``, ``open_set`` and,
    when LFW pairs were run, ``lfw``)."""
    closed, opened = result["closed_set"], result["open_set"]
    target = f"{opened['target_far']:g}"
    tar = opened["tar_at_far"].get(target)
    if tar is None:  # the target FAR is not among the reported ones: measure at the calibrated threshold
        tar = 1.0 - opened["frr_at_threshold"]
    out = {
        "accuracy": float(closed["accuracy"]),
        "far_at_threshold": float(opened.get("far_at_stored_threshold", opened["far_at_threshold"])),
        "tar_at_target_far": float(tar),
        "auc": float(opened["auc"]),
    }
    if result.get("lfw"):
        out["lfw_accuracy"] = float(result["lfw"]["accuracy_mean"])
    return out


def with_lfw(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``models`` of an evaluation report, each with its LFW pairs figures (the pairs of people outside
    the training identities when there are such pairs, else all) under ``lfw``."""
    models = {name: dict(result) for name, result in report["models"].items()}
    for name, entry in (report.get("lfw_pairs") or {}).items():
        if name in models and isinstance(entry, dict):
            models[name]["lfw"] = entry.get("clean") or entry.get("all")
    return models


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, config: GateConfig) -> tuple[bool, str]:
    """Compare two evaluation results (``closed_set`` / ``open_set`` dicts, and ``robustness``: a robustness
    report, when the gate has robustness or group criteria); returns (promote, reason)."""
    new = key_metrics(challenger)
    problems = []
    if new["tar_at_target_far"] < config.min_tar_at_far:
        problems.append(f"TAR at the target FAR {new['tar_at_target_far']:.4f} < floor {config.min_tar_at_far}")
    if champion is None:
        if not config.allow_first:
            return False, "the registry has no champion and the gate does not allow a first promotion"
        return (not problems, "; ".join(problems) or "first champion (no champion to compare with)")
    old = key_metrics(champion)
    drop = old["accuracy"] - new["accuracy"]
    if drop > config.max_accuracy_drop + 1e-12:
        problems.append(
            f"closed-set accuracy dropped {old['accuracy']:.4f} -> {new['accuracy']:.4f} "
            f"(by {drop:.4f} > tolerance {config.max_accuracy_drop})"
        )
    rise = new["far_at_threshold"] - old["far_at_threshold"]
    if rise > config.max_far_increase + 1e-12:
        problems.append(
            f"FAR at the threshold rose {old['far_at_threshold']:.5f} -> {new['far_at_threshold']:.5f} "
            f"(by {rise:.5f} > tolerance {config.max_far_increase})"
        )
    tar_drop = old["tar_at_target_far"] - new["tar_at_target_far"]
    if tar_drop > config.max_tar_drop + 1e-12:
        problems.append(
            f"TAR at the target FAR dropped {old['tar_at_target_far']:.5f} -> {new['tar_at_target_far']:.5f} "
            f"(by {tar_drop:.5f} > tolerance {config.max_tar_drop})"
        )
    if "lfw_accuracy" in new and "lfw_accuracy" in old:
        lfw_drop = old["lfw_accuracy"] - new["lfw_accuracy"]
        if lfw_drop > config.max_lfw_accuracy_drop + 1e-12:
            problems.append(
                f"LFW pairs accuracy dropped {old['lfw_accuracy']:.4f} -> {new['lfw_accuracy']:.4f} "
                f"(by {lfw_drop:.4f} > tolerance {config.max_lfw_accuracy_drop})"
            )
    notes: list[str] = []
    if config.robustness is not None:
        problems += robustness_problems(challenger.get("robustness"), champion.get("robustness"), config.robustness)
    if config.groups is not None:
        found, notes = group_problems(challenger.get("robustness"), champion.get("robustness"), config.groups)
        problems += found
    judged = _judged(new, old, challenger, champion, config)
    if problems:
        return False, "refused: " + "; ".join(problems + notes) + judged
    return True, (
        f"accuracy {old['accuracy']:.4f} -> {new['accuracy']:.4f}, FAR at threshold "
        f"{old['far_at_threshold']:.5f} -> {new['far_at_threshold']:.5f}: within tolerances"
    ) + "".join(f"; {n}" for n in notes) + judged


def _judged(
    new: dict[str, float], old: dict[str, float], challenger: dict[str, Any], champion: dict[str, Any], config: GateConfig
) -> str:
    """The criteria the gate evaluated, champion -> challenger (so a decision says what it judged, passed or not)."""
    parts = [
        f"closed-set accuracy {old['accuracy']:.4f} -> {new['accuracy']:.4f}",
        f"FAR at the threshold {old['far_at_threshold']:.5f} -> {new['far_at_threshold']:.5f}",
        f"TAR at the target FAR {old['tar_at_target_far']:.4f} -> {new['tar_at_target_far']:.4f}",
    ]
    if "lfw_accuracy" in new and "lfw_accuracy" in old:
        parts.append(f"LFW pairs accuracy {old['lfw_accuracy']:.4f} -> {new['lfw_accuracy']:.4f}")
    suites = (champion.get("robustness") or {}, challenger.get("robustness") or {})
    for name in config.robustness.conditions if config.robustness is not None else []:
        before, after = (s.get("conditions", {}).get(name) or {} for s in suites)
        tar = f"TAR {_fmt(before.get('tar_at_far'))} -> {_fmt(after.get('tar_at_far'))}"
        parts.append(f"condition {name} ({tar}, FRR {_fmt(before.get('frr'))} -> {_fmt(after.get('frr'))})")
    for grouping in config.groups.groupings if config.groups is not None else []:
        before, after = (s.get("groups", {}).get(grouping) or {} for s in suites)
        gaps = f"{_fmt(before.get('largest_frr_gap'))} -> {_fmt(after.get('largest_frr_gap'))}"
        parts.append(f"grouping {grouping} (largest FRR gap {gaps})")
    return " [judged: " + "; ".join(parts) + "]"


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def robustness_problems(challenger: dict[str, Any] | None, champion: dict[str, Any] | None, config: RobustnessGateConfig) -> list[str]:
    """Why the challenger fails the robustness criterion (empty: it passes), from two robustness reports
    (:meth:`faceops.evaluation.robustness.RobustnessReport.to_dict`); each problem names its condition."""
    if challenger is None or champion is None:
        return ["robustness criterion set but the suite was not run on both models"]
    problems = []
    for name in config.conditions:
        new, old = challenger["conditions"].get(name), champion["conditions"].get(name)
        if new is None or old is None:
            problems.append(f"condition {name}: not measured")
            continue
        if "insufficient" in (new["status"], old["status"]):
            problems.append(
                f"condition {name}: insufficient pairs to judge ({new['genuine']} genuine, {new['impostors']} "
                f"impostors; at least {config.min_pairs} of each needed)"
            )
            continue
        if new["tar_at_far"] is not None and old["tar_at_far"] is not None:
            drop = old["tar_at_far"] - new["tar_at_far"]
            if drop > config.max_drop + 1e-12:
                problems.append(
                    f"condition {name}: TAR at FAR {challenger['target_far']:g} dropped {old['tar_at_far']:.4f} -> "
                    f"{new['tar_at_far']:.4f} (by {drop:.4f} > tolerance {config.max_drop})"
                )
        problems += _frr_rise(f"condition {name}: FRR at the threshold", old["frr"], new["frr"], config.max_frr_increase)
    return problems


def _frr_rise(what: str, before: float, after: float, tolerance: float) -> list[str]:
    """The problem when an FRR rose by more than ``tolerance`` (empty: it did not)."""
    rise = after - before
    if rise > tolerance + 1e-12:
        return [f"{what} rose {before:.4f} -> {after:.4f} (by {rise:.4f} > tolerance {tolerance})"]
    return []


def group_problems(
    challenger: dict[str, Any] | None, champion: dict[str, Any] | None, config: GroupGateConfig
) -> tuple[list[str], list[str]]:
    """(problems, notes) of the per-group criterion from two robustness reports; notes name the groups too
    small to judge."""
    if challenger is None or champion is None:
        return ["groups criterion set but the suite was not run on both models"], []
    problems: list[str] = []
    small: list[str] = []
    for grouping in config.groupings:
        new, old = challenger["groups"].get(grouping), champion["groups"].get(grouping)
        if new is None or old is None:
            problems.append(f"grouping {grouping}: not measured (no such grouping or attribute column)")
            continue
        for group, m in new["groups"].items():
            before = old["groups"].get(group)
            if m["status"] != "ok" or before is None or before["status"] != "ok":
                small.append(f"{grouping}/{group} ({m['genuine']}+{m['impostors']} pairs)")
                continue
            problems += _frr_rise(f"group {grouping}/{group}: FRR", before["frr"], m["frr"], config.max_frr_increase)
        gap_new, gap_old = new.get("largest_frr_gap"), old.get("largest_frr_gap")
        if gap_new is not None and gap_old is not None and gap_new - gap_old > config.max_gap_increase + 1e-12:
            problems.append(
                f"grouping {grouping}: largest FRR gap between groups grew {gap_old:.4f} -> {gap_new:.4f} "
                f"(worst group {new['worst_group']}; tolerance {config.max_gap_increase})"
            )
    notes = [f"too few pairs to judge: {', '.join(small)}"] if small else []
    return problems, notes


def run_gate(
    data_root: Path,
    gate: GateConfig,
    evaluation: EvalConfig,
    version: str | None = None,
    uri: str | None = None,
    force: bool = False,
    lfw_pairs: LfwPairsConfig | None = None,
    *,
    cache_dir: Path,
) -> GateDecision:
    """Evaluate challenger (or ``version``) and champion on ``data_root`` (and on LFW pairs when given) and
    promote or refuse; ``cache_dir`` is the crop and trunk cache root.

    Raises:
        ModelNotFound: no such version, or no challenger.
    """
    from faceops import registry
    from faceops.training.run import evaluate_bundles

    challenger = version or registry.alias_version(registry.CHALLENGER, uri)
    if challenger is None:
        raise ModelNotFound(f"registered model '{registry.MODEL_NAME}' has no challenger: train one first")
    champion = registry.alias_version(registry.CHAMPION, uri)
    if champion == challenger:
        return GateDecision(False, f"version {challenger} is already the champion", challenger, champion)
    if force:
        reason = "forced by hand (gate skipped)"
        registry.set_alias(registry.CHAMPION, challenger, reason, uri)
        return GateDecision(True, reason, challenger, champion)
    bundles = {"challenger": registry.load_bundle(f"models:/{registry.MODEL_NAME}/{challenger}", uri)}
    if champion is not None:
        bundles["champion"] = registry.load_bundle(f"models:/{registry.MODEL_NAME}/{champion}", uri)
        if same_model(bundles["challenger"], bundles["champion"]):
            reason = f"refused: version {challenger} has the same weights and threshold as champion {champion}"
            registry.tag_version(
                challenger,
                {"faceops.evaluation.gate": json.dumps({"promoted": False, "reason": reason, "champion": champion})},
                uri,
            )
            return GateDecision(False, reason, challenger, champion)
    results = with_lfw(evaluate_bundles(bundles, data_root, evaluation, lfw_pairs=lfw_pairs, cache_dir=cache_dir).report)
    if gate.robustness is not None or gate.groups is not None:
        from faceops.evaluation.robustness import gate_suite

        for name, bundle in bundles.items():
            results[name]["robustness"] = gate_suite(bundle, gate, data_root, evaluation, lfw_pairs)
    promoted, reason = decide(results["challenger"], results.get("champion"), gate)
    decision = GateDecision(promoted, reason, challenger, champion, {k: key_metrics(v) for k, v in results.items()})
    registry.tag_version(
        challenger,
        {"faceops.evaluation.gate": json.dumps({"promoted": promoted, "reason": reason, "champion": champion})},
        uri,
    )
    if promoted:
        registry.set_alias(registry.CHAMPION, challenger, reason, uri)
    return decision


def same_model(a: Any, b: Any) -> bool:
    """Equal weights, preprocessing and threshold: promoting would change nothing (e.g. training kept the
    pretrained tail because fine-tuning never beat it)."""
    import torch

    if a.preprocess != b.preprocess or abs(a.threshold - b.threshold) > 1e-9:
        return False
    if isinstance(a.backbone, torch.nn.Module) != isinstance(b.backbone, torch.nn.Module):
        return False
    if not isinstance(a.backbone, torch.nn.Module):  # ONNX networks: the same bytes
        return bool(a.backbone.model_bytes == b.backbone.model_bytes)
    sa, sb = a.backbone.state_dict(), b.backbone.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
