"""Pure statistics of production monitoring: rates with Wilson intervals and accuracy / FAR / FRR from
feedback.

Feedback gives the truth of a logged face (see ``serving/requestlog.py``): an identity name, ``'impostor'``
(recognize: not an enrolled person; verify: not the same person) or ``'genuine'`` (verify: the same person).
Each labelled face is one *attempt*:

* **mated** attempts should be accepted: a recognize face whose truth is an identity, a verify pair that is
  ``genuine``. Correct when recognised as that identity (verify: decided ``same``).
* **non-mated** attempts should be rejected: truth ``impostor`` (or ``unknown``). Correct when the service
  said ``unknown`` (verify: ``different``).

``accuracy`` = correct / attempts, ``FAR`` = non-mated accepted / non-mated, ``FRR`` = mated rejected / mated;
a mated face recognised as someone else is a *misidentification* (counted in ``misidentification_rate``, and
as an error in ``accuracy``). Every rate comes with its 95 % Wilson score interval, which stays inside [0, 1]
and is honest for the small counts a monitoring window holds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from faceops.errors import ConfigError

__all__ = ["LabelledFace", "Performance", "Rate", "parse_duration", "performance", "wilson_interval"]

NON_MATED = frozenset({"impostor", "unknown"})
_Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % by default); ``(0, 1)`` when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes {successes} outside [0, {n}]")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 or k = n the bound is exactly 0 or 1 (the formula leaves rounding noise there).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n`` with the point estimate and its Wilson interval (``value``: ``None`` if ``n`` is 0)."""

    k: int
    n: int
    value: float | None
    low: float
    high: float

    @classmethod
    def of(cls, k: int, n: int) -> Rate:
        low, high = wilson_interval(k, n)
        return cls(k, n, k / n if n else None, low, high)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabelledFace:
    """One logged face with its feedback."""

    endpoint: str
    decision: str | None
    predicted: str | None
    truth: str


@dataclass(frozen=True)
class Performance:
    """Accuracy, FAR, FRR and misidentification over the labelled faces of a window."""

    accuracy: Rate
    far: Rate
    frr: Rate
    misidentification_rate: Rate
    labelled: int
    unusable: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy.to_dict(),
            "far": self.far.to_dict(),
            "frr": self.frr.to_dict(),
            "misidentification_rate": self.misidentification_rate.to_dict(),
            "labelled": self.labelled,
            "unusable": self.unusable,
        }


def _outcome(face: LabelledFace) -> tuple[bool, bool, bool] | None:
    """(mated, accepted, correct) of one labelled face, or ``None`` when the feedback cannot be scored."""
    truth = face.truth.strip()
    if face.endpoint == "verify":
        if truth not in ("genuine", "impostor") or face.decision not in ("same", "different"):
            return None
        mated, accepted = truth == "genuine", face.decision == "same"
        return mated, accepted, mated == accepted
    if face.endpoint != "recognize" or face.decision not in ("known", "unknown") or truth == "genuine":
        return None
    accepted = face.decision == "known"
    if truth.lower() in NON_MATED:
        return False, accepted, not accepted
    return True, accepted, accepted and face.predicted == truth


def performance(faces: Iterable[LabelledFace]) -> Performance:
    """Score the labelled faces (see the module docstring); unscorable feedback is counted apart."""
    n = correct = mated = mated_rejected = mated_wrong = non_mated = false_accepts = unusable = 0
    for face in faces:
        outcome = _outcome(face)
        if outcome is None:
            unusable += 1
            continue
        is_mated, accepted, ok = outcome
        n += 1
        correct += ok
        if is_mated:
            mated += 1
            mated_rejected += not accepted
            mated_wrong += accepted and not ok
        else:
            non_mated += 1
            false_accepts += accepted
    return Performance(
        accuracy=Rate.of(correct, n),
        far=Rate.of(false_accepts, non_mated),
        frr=Rate.of(mated_rejected, mated),
        misidentification_rate=Rate.of(mated_wrong, mated),
        labelled=n,
        unusable=unusable,
    )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds of a duration like ``'90s'``, ``'10m'``, ``'1.5h'``, ``'7d'`` or a plain number of seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text).lower())
        if not match:
            raise ConfigError(f"bad duration {text!r}: use a number with s, m, h or d (e.g. '10m', '1h')")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not seconds > 0 or math.isinf(seconds):
        raise ConfigError(f"bad duration {text!r}: it must be positive")
    return seconds
