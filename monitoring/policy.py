"""The policy: which figures of a window raise an alarm, each with its reason and the numbers behind it.

* **drift**: at least ``max_drift_share`` of the tested features (the per-face features and the embeddings)
  drifted from the champion's reference; judged only with ``min_faces`` faces in the window.
* **accuracy**: the window's accuracy is more than ``max_accuracy_drop`` below the reference's;
* **far**: the window's FAR is above ``max_far``; without one, more than ``max_far_increase`` above the
  reference's FAR (the champion's own 1:N FAR on the evaluation data) and above the champion's target FAR;
  both judged only with ``min_feedback`` labelled faces. With ``use_confidence`` the upper end of the accuracy
  interval and the lower end of the FAR interval are used: an alarm means the degradation is statistically
  clear.

Whether an alarm starts a retraining (``retrain_on``, cooldown) is decided by :mod:`faceops.monitoring.monitor`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from faceops.monitoring.config import PolicyConfig
from faceops.monitoring.drift import DriftResult

from faceops.telemetry.stats import Performance

__all__ = ["Alarm", "Judgement", "far_limit", "judge"]


@dataclass
class Alarm:
    kind: str
    message: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass
class Judgement:
    """The alarms of a window and what could not be judged (``notes``)."""

    alarms: list[Alarm] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    judged: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"alarms": [asdict(a) for a in self.alarms], "notes": self.notes, "judged": self.judged}


def _judge_drift(drift: DriftResult | None, faces: int, config: PolicyConfig, out: Judgement) -> None:
    if drift is None or faces < config.min_faces:
        out.notes.append(
            f"drift not judged: {faces} face(s) in the window, the policy needs {config.min_faces}"
        )
        return
    if drift.share is None:
        out.notes.append("drift not judged: no feature had enough values to test")
        return
    out.judged.append("drift")
    if drift.share >= config.max_drift_share:
        detail = ", ".join(
            f"{f.feature} ({f.method} {f.score:.3g})"
            for f in drift.features
            if f.drifted and f.score is not None
        )
        out.alarms.append(
            Alarm(
                "drift",
                f"{len(drift.drifted)} of {len(drift.tested)} features drifted "
                f"(share {drift.share:.2f} >= {config.max_drift_share}): {detail}",
                {"share": drift.share, "drifted": drift.drifted, "tested": len(drift.tested)},
            )
        )


def far_limit(config: PolicyConfig, reference_perf: dict[str, Any], target_far: float | None) -> float | None:
    """The FAR above which a window alarms: ``max_far`` when set, else the reference's FAR plus
    ``max_far_increase`` but never below the target FAR; ``None`` when nothing defines one."""
    if config.max_far is not None:
        return config.max_far
    reference_far = (reference_perf.get("far") or {}).get("value")
    if reference_far is None:
        return target_far
    return max(float(reference_far) + config.max_far_increase, target_far or 0.0)


def judge(
    drift: DriftResult | None,
    faces: int,
    perf: Performance | None,
    reference_perf: dict[str, Any],
    target_far: float | None,
    config: PolicyConfig,
) -> Judgement:
    """Apply the policy to a window's drift and feedback figures."""
    out = Judgement()
    _judge_drift(drift, faces, config, out)
    if perf is None or perf.labelled < config.min_feedback:
        labelled = 0 if perf is None else perf.labelled
        out.notes.append(
            f"accuracy/FAR not judged: {labelled} labelled face(s) in the window, the policy needs "
            f"{config.min_feedback}"
        )
        return out
    ref_accuracy = (reference_perf.get("accuracy") or {}).get("value")
    if ref_accuracy is None:
        out.notes.append("accuracy not judged: the reference has no accuracy")
    else:
        out.judged.append("accuracy")
        seen = perf.accuracy.high if config.use_confidence else perf.accuracy.value
        if seen is not None and ref_accuracy - seen > config.max_accuracy_drop + 1e-12:
            out.alarms.append(
                Alarm(
                    "accuracy",
                    (
                        f"accuracy {perf.accuracy.value:.3f} "
                        f"(95% CI {perf.accuracy.low:.3f}-{perf.accuracy.high:.3f}, "
                        f"n={perf.accuracy.n}) is more than {config.max_accuracy_drop} below the reference "
                        f"{ref_accuracy:.3f}"
                    ),
                    {"accuracy": perf.accuracy.to_dict(), "reference_accuracy": ref_accuracy},
                )
            )
    limit = far_limit(config, reference_perf, target_far)
    if limit is None:
        out.notes.append(
            "FAR not judged: no max_far in the policy, and neither a reference FAR nor a target FAR on the champion"
        )
    elif perf.far.n == 0:
        out.notes.append("FAR not judged: no impostor feedback in the window")
    else:
        out.judged.append("far")
        seen = perf.far.low if config.use_confidence else perf.far.value
        if seen is not None and seen > limit:
            out.alarms.append(
                Alarm(
                    "far",
                    (
                        f"FAR {perf.far.value:.4f} (95% CI {perf.far.low:.4f}-{perf.far.high:.4f}, "
                        f"{perf.far.k} of "
                        f"{perf.far.n} impostors accepted) is above the allowed {limit:g}"
                    ),
                    {"far": perf.far.to_dict(), "max_far": limit},
                )
            )
    return out
