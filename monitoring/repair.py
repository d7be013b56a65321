"""Whether a drift is known not to be repaired by retraining, and what became of the retraining that was tried.

A retraining started for a drift (its signature: which features moved and which way, see
:func:`faceops.training.drift_plan.drift_signature`) has ended, and performance alarms again under the same drift:
retraining once more would repeat it, so the monitor answers ``unrepairable`` (an alert, no new start). What the
alert says depends on what became of the retrained model:

``refused``   the gate refused it (its decision, with the figures, is the ``faceops.evaluation.gate`` tag of the
              version it registered): the champion that saw the drift is still served
``promoted``  it passed the gate and became champion, yet the served model still alarms under the drift
``unknown``   neither could be established (no registered version for that retraining, registry unreachable, or
              a local reference without a registry): the champion did not change
"""

from __future__ import annotations

import json
from typing import Any

from faceops.monitoring.state import FAILED_RUN_STATES, FINAL_RUN_STATES, MonitorState

from faceops.errors import FaceOpsError

__all__ = ["known_unrepairable"]


def known_unrepairable(
    state: MonitorState,
    drift: dict[str, Any] | None,
    alarms: list[Any],
    champion: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any] | None:
    """Why this drift is known not to be repaired by retraining (None: it is not known): a retraining started
    for the same drift has ended and performance still alarms under it.

    Args:
        state: the monitor state (its triggers carry the drift, the run and the champion at the start).
        drift: this window's drift payload (``target`` gives the signature).
        alarms: this window's retraining alarms; only drift alarms never make a drift "unrepairable".
        champion: the version serving now.
        tracking_uri: the registry to read the retrained version's gate decision from (None: not read).

    Returns:
        ``outcome`` (``refused`` / ``promoted`` / ``unknown``), ``run_id``, ``signature``, the champion at the
        start and now, the retrained ``version`` and ``gate`` decision when found, the alarms' figures, and
        ``message`` (the alert's reason, which says the outcome with the figures).
    """
    from faceops.training.drift_plan import drift_signature

    signature = drift_signature((drift or {}).get("target"))
    performance = [a for a in alarms if a.kind != "drift"]
    if not signature or not performance:
        return None
    try:
        started = [t for t in state.triggers(10) if t["status"] == "started"]
    except FaceOpsError:
        return None
    for earlier in started:
        detail = earlier.get("detail") or {}
        if drift_signature((detail.get("drift") or {}).get("target")) != signature:
            continue
        ended = earlier.get("run_state") in FINAL_RUN_STATES or detail.get("status") in FINAL_RUN_STATES
        if not ended:
            return None  # still running: the cooldown decides
        if (earlier.get("run_state") or detail.get("status")) in FAILED_RUN_STATES:
            return None  # it never produced a model: that says nothing about the drift; the retry policy decides
        before = detail.get("champion")
        known: dict[str, Any] = {
            "run_id": detail.get("run_id"),
            "run_state": earlier.get("run_state") or detail.get("status"),
            "signature": list(signature),
            "champion_at_start": before,
            "champion_now": champion,
            "alarms": [f"{a.kind}: {a.message}" for a in performance],
        }
        known.update(_outcome(before, champion, tracking_uri))
        known["message"] = _message(known)
        return known
    return None


def _outcome(before: str | None, now: str | None, uri: str | None) -> dict[str, Any]:
    """What became of the retrained model: the newest version gated against the champion of the start."""
    found: dict[str, Any] | None = None
    if before is not None and uri is not None:
        from faceops import registry

        try:
            versions = registry.list_versions(uri)
        except FaceOpsError as exc:
            return {
                "outcome": "unknown" if now == before else "promoted",
                "version": None,
                "gate": None,
                "registry_error": f"{type(exc).__name__}: {exc}",
            }
        for row in versions:  # newest first
            tag = row["tags"].get("faceops.evaluation.gate")
            if not tag or not row["version"].isdigit() or not before.isdigit() or int(row["version"]) <= int(before):
                continue
            gate = json.loads(tag)
            if str(gate.get("champion")) == before:
                found = {"version": row["version"], "gate": gate}
                break
    if now is not None and before is not None and now != before:
        return {"outcome": "promoted", "version": (found or {}).get("version", now), "gate": (found or {}).get("gate")}
    if found is not None and not found["gate"].get("promoted"):
        return {"outcome": "refused", **found}
    return {"outcome": "unknown", "version": (found or {}).get("version"), "gate": (found or {}).get("gate")}


def _message(known: dict[str, Any]) -> str:
    head = (
        f"known unrepairable: the retraining run {known['run_id']} started for this drift "
        f"({', '.join(known['signature'])}) has ended ({known['run_state']})"
    )
    alarms = "; ".join(known["alarms"])
    gate = known.get("gate") or {}
    if known["outcome"] == "refused":
        what = (
            f"; the retrained model (version {known['version']}) was REFUSED by the gate, so champion "
            f"{known['champion_at_start']} still serves: {gate.get('reason')}; performance still alarms: {alarms}"
        )
    elif known["outcome"] == "promoted":
        what = (
            f"; the retrained model (version {known['version']}) was PROMOTED and serves, and performance still "
            f"alarms under the same drift: {alarms}"
        )
    else:
        what = (
            f"; no retrained model was promoted (champion {known['champion_now']} unchanged, gate decision not "
            f"found) and performance still alarms: {alarms}"
        )
    return (
        head + what + "; alerting without another retraining until the drift changes "
        "(benchmarks/results/drift_repair.json measures what illumination and augmentation can do)"
    )
