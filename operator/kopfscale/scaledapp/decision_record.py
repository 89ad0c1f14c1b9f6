"""What shaped one decision, step by step: the record a reader needs to recompute it. Pure.

A :class:`~kopfscale.scaledapp.policy.Decision` says where the policy ended; this module says how
it got there, in the order the policy applies its rules (kubernetes#138992's ``constraintsApplied``):

    raw desired (max of the per-metric proposals)
      -> Tolerance / Fallback (a metric's proposal held at current, or taken from fallback.replicas)
      -> MissingMetricHold (a scale-down skipped because a metric failed)
      -> Activation (zero and back: 0 -> 1, or everything inactive -> 0)
      -> Paused | MinReplicas | MaxReplicas (bounds first) | AllMetricsFailed
      -> Stabilization (the windows)
      -> Policy (scale-up/-down rate limits, or a disabled direction)
      -> MinReplicas | MaxReplicas | Cooldown (the final clamp)
      = final desired

Each :class:`Constraint` carries the count it produced, so applying them one after the other from
the raw desired count gives the final one; the simulator prints the last one as "limited by".
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kopfscale.scaledapp import policy
from kopfscale.scaledapp.history import fmt_time
from kopfscale.scaledapp.policy import Decision, MetricEvaluation

TOLERANCE = "Tolerance"
FALLBACK = "Fallback"
MISSING_METRIC_HOLD = "MissingMetricHold"
ACTIVATION = "Activation"
PAUSED = "Paused"
ALL_METRICS_FAILED = "AllMetricsFailed"
MIN_REPLICAS = "MinReplicas"
MAX_REPLICAS = "MaxReplicas"
STABILIZATION = "Stabilization"
POLICY = "Policy"
COOLDOWN = "Cooldown"

#: The short names the simulator shows in its "limited by" column.
SHORT = {
    TOLERANCE: "tolerance",
    FALLBACK: "fallback",
    MISSING_METRIC_HOLD: "fallback",
    ALL_METRICS_FAILED: "fallback",
    ACTIVATION: "activation",
    PAUSED: "pause",
    MIN_REPLICAS: "min",
    MAX_REPLICAS: "max",
    STABILIZATION: "window",
    POLICY: "policy",
    COOLDOWN: "cooldown",
}

_BOUND = {policy.TOO_MANY_REPLICAS: MAX_REPLICAS, policy.TOO_FEW_REPLICAS: MIN_REPLICAS}
_POLICY_REASONS = (
    policy.SCALE_UP_LIMIT,
    policy.SCALE_DOWN_LIMIT,
    policy.SCALE_UP_DISABLED,
    policy.SCALE_DOWN_DISABLED,
)


@dataclass(frozen=True)
class Constraint:
    type: str  # one of the constants above
    replicas: int  # the count after this rule
    reason: str | None = None  # the policy's reason, when the rule is one of its final limits

    @property
    def short(self) -> str:
        return SHORT.get(self.type, self.type.lower())


def _untolerated(m: MetricEvaluation, current: int) -> int | None:
    """What the metric would have proposed without the tolerance band."""
    if m.ratio is None:
        return m.recommendation
    if m.adjusted_ratio is not None:  # resource Pods set aside, then counted: that ratio decided
        return math.ceil((m.pods or current) * m.adjusted_ratio - policy.ROUNDING_EPSILON)
    # Every kind of ratio gives the untolerated proposal as pods x ratio, over the Pods it was
    # computed for (for a total per replica, ratio = value / (target x status.replicas)).
    pods = current if m.pods is None else m.pods
    return math.ceil(pods * m.ratio - policy.ROUNDING_EPSILON)


def raw_desired(d: Decision) -> int:
    """The max of the per-metric proposals (``current`` when no metric has one)."""
    proposals = [m.recommendation for m in d.metrics if m.recommendation is not None]
    return max(proposals) if proposals else d.current


def constraints(d: Decision) -> tuple[Constraint, ...]:
    applied: list[Constraint] = []
    driver = next((m for m in d.metrics if m.name == d.driver), None)
    raw = raw_desired(d)
    if driver is not None and driver.within_tolerance and _untolerated(driver, d.current) != raw:
        applied.append(Constraint(TOLERANCE, raw))
    elif driver is not None and driver.fallback:
        applied.append(Constraint(FALLBACK, raw))
    value = raw
    if d.held_for_missing:
        value = d.current
        applied.append(Constraint(MISSING_METRIC_HOLD, value))
    if not d.all_failed and d.recommendation != value:
        value = d.recommendation
        applied.append(Constraint(ACTIVATION, value))
    if d.reason == policy.PAUSED:
        return (*applied, Constraint(PAUSED, d.desired))
    if d.reason == policy.ALL_METRICS_FAILED:
        return (*applied, Constraint(ALL_METRICS_FAILED, d.desired))
    if d.reason in _BOUND and d.stabilized == d.current and d.desired != d.current:
        # Bounds first: the count was outside [min, max] before any behaviour applied.
        return (*applied, Constraint(_BOUND[d.reason], d.desired, d.reason))
    if d.stabilized_by_window:
        applied.append(Constraint(STABILIZATION, d.stabilized))
    if d.limited:
        if d.reason in _POLICY_REASONS:
            applied.append(Constraint(POLICY, d.desired, d.reason))
        elif d.reason in _BOUND:
            applied.append(Constraint(_BOUND[d.reason], d.desired, d.reason))
        elif d.reason in (policy.COOLDOWN, policy.INITIAL_COOLDOWN):
            applied.append(Constraint(COOLDOWN, d.desired, d.reason))
    return tuple(applied)


def limited_by(d: Decision) -> str | None:
    """The short name of the last rule that changed (or held) the count; None: the raw count stood."""
    applied = constraints(d)
    return applied[-1].short if applied else None


DIRECTIONS = {1: "ScaleUp", -1: "ScaleDown", 0: "None"}


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else round(x, 6)


def status_fields(d: Decision) -> dict[str, Any]:
    """The recomputable part of ``status.lastDecision`` (kubernetes#138992's shape, our names).

    ``currentReplicas``, ``rawDesiredReplicas`` (max of the proposals), ``finalDesiredReplicas``,
    ``direction``, ``metrics[]`` (``name``, ``value`` or ``error``, ``target``, ``pods``,
    ``adjustedRatio``, ``proposal``) and
    ``constraintsApplied[]`` (``type``, ``replicas`` after it, ``reason`` for the final limits), in
    the order the policy applied them.
    """
    metrics: list[dict[str, Any]] = []
    for m in d.metrics:
        item: dict[str, Any] = {"name": m.name}
        if m.value is not None:
            item["value"] = _number(m.value)
        if m.error is not None:
            item["error"] = m.error
        if m.target is not None:
            item["target"] = {"type": m.target.type, "value": _number(m.target.value)}
        if m.pods is not None:
            item["pods"] = m.pods
        if m.adjusted_ratio is not None:
            item["adjustedRatio"] = round(m.adjusted_ratio, 4)
        if m.recommendation is not None:
            item["proposal"] = m.recommendation
        metrics.append(item)
    applied = []
    for c in constraints(d):
        entry: dict[str, Any] = {"type": c.type, "replicas": c.replicas}
        if c.reason:
            entry["reason"] = c.reason
        applied.append(entry)
    return {
        "currentReplicas": d.current,
        "rawDesiredReplicas": raw_desired(d),
        "finalDesiredReplicas": d.desired,
        "direction": DIRECTIONS[d.direction],
        "metrics": metrics,
        "constraintsApplied": applied,
    }


def decided_at(record: Mapping[str, Any], previous: Mapping[str, Any] | None, now: datetime.datetime) -> str:
    """``lastDecision.time``: when this decision was first reached. A round that reaches the same
    decision again keeps the earlier time, so a settled ScaledApp writes no status."""
    if previous and isinstance(previous.get("time"), str):
        same = {k: v for k, v in previous.items() if k != "time"} == {
            k: v for k, v in record.items() if k != "time"
        }
        if same:
            return str(previous["time"])
    return fmt_time(now)
