"""The detector's gate: a trained detector replaces the champion detector only if faces stay as good.

What matters is what the detector feeds: LFW verification accuracy with its landmarks feeding the same embedder
(and the same alignment), and how many faces it finds on photos of several people. A candidate is admitted only if,
against the champion detector (MTCNN when no trained detector is champion) measured on the same pairs and photos,

* LFW verification accuracy drops by at most ``max_accuracy_drop`` (0.002: 0.2 points), and
* recall on the multi-face photos drops by at most ``max_recall_drop`` (0.02: 2 points).

A refusal names every condition that failed, with both figures and the drop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from faceops.errors import ConfigError
from faceops.face.config import StrictConfig

__all__ = ["DETECTOR_MODEL_NAME", "DetectorGateConfig", "DetectorGateDecision", "decide_detector"]

DETECTOR_MODEL_NAME = "faceops-detector"
"""The default name of the detector's registered model in MLflow (:func:`faceops.registry.register_detector`)."""

# the figures the gate reads from an evaluation (:func:`faceops.detector.measure.measure_detector`)
ACCURACY = "lfw_accuracy"
RECALL = "multiface_recall"


class DetectorGateConfig(StrictConfig):
    """The gate's tolerances, as fractions (0.002 = 0.2 points)."""

    max_accuracy_drop: float = Field(
        default=0.002, ge=0.0, le=1.0, description="Largest drop of LFW verification accuracy admitted."
    )
    max_recall_drop: float = Field(
        default=0.02, ge=0.0, le=1.0, description="Largest drop of recall on the multi-face photos admitted."
    )


@dataclass(frozen=True)
class DetectorGateDecision:
    """The gate's answer: admitted or not, why, and the figures it compared."""

    admitted: bool
    reason: str
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"admitted": self.admitted, "reason": self.reason, "problems": self.problems, "figures": self.figures}


def _figure(scores: Mapping[str, Any], key: str, who: str) -> float:
    value = scores.get(key)
    if not isinstance(value, (int, float)):
        raise ConfigError(f"the {who} detector's evaluation has no {key!r} figure (got {value!r})")
    return float(value)


def decide_detector(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any],
    config: DetectorGateConfig | None = None,
    champion_name: str = "MTCNN",
) -> DetectorGateDecision:
    """Compare a candidate detector's figures with the champion's (both measured on the same pairs and photos).

    Args:
        candidate, champion: evaluations holding ``lfw_accuracy`` and ``multiface_recall`` (fractions).
        config: the tolerances.
        champion_name: how the reason names the champion ("MTCNN", "detector version 3").

    Raises:
        ConfigError: an evaluation lacks one of the figures.
    """
    config = config or DetectorGateConfig()
    figures: dict[str, Any] = {}
    problems = []
    for key, limit, what in (
        (ACCURACY, config.max_accuracy_drop, "LFW verification accuracy"),
        (RECALL, config.max_recall_drop, "multi-face recall"),
    ):
        new, old = _figure(candidate, key, "candidate"), _figure(champion, key, "champion")
        drop = old - new
        figures[key] = {"candidate": new, "champion": old, "drop": round(drop, 6), "max_drop": limit}
        if drop > limit + 1e-12:
            problems.append(
                f"{what} drops by {100 * drop:.2f} points ({100 * new:.2f}% against {champion_name}'s "
                f"{100 * old:.2f}%; at most {100 * limit:.2f} allowed)"
            )
    if problems:
        return DetectorGateDecision(False, "refused: " + "; ".join(problems), problems, figures)
    accuracy, recall = figures[ACCURACY], figures[RECALL]
    reason = (
        f"admitted against {champion_name}: LFW accuracy {100 * accuracy['candidate']:.2f}% "
        f"(champion {100 * accuracy['champion']:.2f}%), multi-face recall {100 * recall['candidate']:.2f}% "
        f"(champion {100 * recall['champion']:.2f}%)"
    )
    return DetectorGateDecision(True, reason, [], figures)
