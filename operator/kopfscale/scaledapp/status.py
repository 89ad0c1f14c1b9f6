"""The ScaledApp's ``status``: built from a decision, compared, and turned into a patch. Pure.

Conditions (``metav1.Condition``, via :mod:`kopfscale.conditions`):

- ``Ready``: the workload can be read and scaled (``False`` with the reason when not).
- ``Active``: some metric is above its ``activationThreshold`` (``Unknown`` when one failed).
- ``ScalingLimited``: the policies, the bounds or the cooldown changed the recommendation.
- ``Fallback``: a metric failed more than ``fallback.failureThreshold`` times in a row (KEDA's
  rule: the (N+1)-th failure) and ``fallback.replicas`` applies.
- ``Paused``: ``spec.paused`` holds the count.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from kopfscale.conditions import (
    Condition,
    conditions_equal_ignoring_time,
    make_condition,
    merge_conditions,
)
from kopfscale.scaledapp import decision_record, policy
from kopfscale.scaledapp.policy import Decision, MetricEvaluation
from kopfscale.scaledapp.spec import ScaledAppSpec

READY, ACTIVE, LIMITED, FALLBACK, PAUSED = "Ready", "Active", "ScalingLimited", "Fallback", "Paused"

LIMIT_MESSAGES = {
    policy.SCALE_UP_LIMIT: "the desired count is increasing faster than the scale-up policies allow",
    policy.SCALE_DOWN_LIMIT: "the desired count is decreasing faster than the scale-down policies allow",
    policy.SCALE_UP_DISABLED: "scale-up is disabled (behavior.scaleUp.selectPolicy: Disabled)",
    policy.SCALE_DOWN_DISABLED: "scale-down is disabled (behavior.scaleDown.selectPolicy: Disabled)",
    policy.TOO_MANY_REPLICAS: "the desired count is more than maxReplicas",
    policy.TOO_FEW_REPLICAS: "the desired count is less than minReplicas",
    policy.COOLDOWN: "every metric is inactive; scale to zero waits for cooldownPeriod",
    policy.INITIAL_COOLDOWN: "every metric is inactive; scale to zero waits for initialCooldownPeriod",
}

#: Without ``behavior`` the scale-up limit is the HPA controller's legacy one.
LEGACY_SCALE_UP_MESSAGE = (
    "the desired count is increasing faster than the maximum scale rate "
    "(no behavior: at most max(2 x current, 4) per round)"
)


def _num(x: float) -> float | int:
    """Whole numbers as integers (``50`` rather than ``50.0``), others rounded for readability."""
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else round(x, 6)


def metric_status(m: MetricEvaluation) -> dict[str, Any]:
    item: dict[str, Any] = {"name": m.name, "type": m.type}
    if m.target is not None:
        item["target"] = {"type": m.target.type, "value": _num(m.target.value)}
    if m.value is not None:
        item["value"] = _num(m.value)
    if m.ratio is not None:
        item["ratio"] = round(m.ratio, 4)
    if m.pods is not None:
        item["pods"] = m.pods
    if m.adjusted_ratio is not None:
        item["adjustedRatio"] = round(m.adjusted_ratio, 4)
    if m.recommendation is not None:
        item["recommendation"] = m.recommendation
    if m.active is not None:
        item["active"] = m.active
    if m.error is not None:
        item["error"] = m.error
        item["consecutiveFailures"] = m.failures
    if m.fallback:
        item["fallback"] = True
    return item


def decision_status(
    d: Decision, now: datetime.datetime | None = None, previous: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``status.lastDecision``: the summary (``from``, ``to``, ...) and what recomputes it
    (:func:`decision_record.status_fields`); ``time`` when ``now`` is given (kept from ``previous``
    while the decision is the same)."""
    result: dict[str, Any] = {
        "from": d.current,
        "to": d.desired,
        "recommendation": d.recommendation,
        "reason": d.reason,
        "message": d.explanation,
    }
    if d.driver:
        result["drivingMetric"] = d.driver
    result.update(decision_record.status_fields(d))
    if now is not None:
        result["time"] = decision_record.decided_at(result, previous, now)
    return result


def decision_conditions(
    d: Decision, spec: ScaledAppSpec, generation: int | None, now: datetime.datetime
) -> list[Condition]:
    def cond(type_: str, status: str | bool, reason: str, message: str) -> Condition:
        return make_condition(type_, status, reason, message, observed_generation=generation, now=now)  # type: ignore[arg-type]

    if d.active is True:
        names = ", ".join(
            f"{m.name} ({m.value if m.value is not None else 'fallback'})" for m in d.metrics if m.active
        )
        active = cond(ACTIVE, True, "MetricActive", f"above the activation threshold: {names}")
    elif d.active is False:
        active = cond(ACTIVE, False, "NoMetricActive", "every metric is at or below its activationThreshold")
    else:
        failed = ", ".join(m.name for m in d.metrics if m.error is not None)
        active = cond(ACTIVE, "Unknown", "MetricsUnavailable", f"cannot tell: failed to read {failed}")

    if d.limited and d.reason in LIMIT_MESSAGES:
        text = LIMIT_MESSAGES[d.reason]
        if d.reason == policy.SCALE_UP_LIMIT and spec.behavior.legacy:
            text = LEGACY_SCALE_UP_MESSAGE
        limited = cond(LIMITED, True, d.reason, f"{text} ({d.stabilized} -> {d.desired})")
    else:
        limited = cond(
            LIMITED, False, policy.WITHIN_RANGE, "the desired count is within the acceptable range"
        )

    in_fallback = [m for m in d.metrics if m.fallback]
    failing = [m for m in d.metrics if m.error is not None and not m.fallback]
    if in_fallback and spec.fallback is not None:
        fallback = cond(
            FALLBACK,
            True,
            "FallbackActive",
            (
                f"{', '.join(m.name for m in in_fallback)} failed more than "
                f"fallback.failureThreshold={spec.fallback.failure_threshold} times in a row; "
                f"counting as fallback.replicas={spec.fallback.replicas}"
            ),
        )
    elif failing:
        fallback = cond(
            FALLBACK,
            False,
            "MetricsFailing",
            "; ".join(f"{m.name} failed {m.failures} time(s) in a row" for m in failing)
            + ("" if spec.fallback else " (no fallback configured: the count is held)"),
        )
    else:
        fallback = cond(FALLBACK, False, "MetricsHealthy", "every metric was read")

    if spec.paused:
        paused = cond(PAUSED, True, "Paused", f"spec.paused is set: holding {d.current} replicas")
    else:
        paused = cond(PAUSED, False, "NotPaused", "scaling is not paused")
    return [active, limited, fallback, paused]


def ready_condition(
    ok: bool, reason: str, message: str, generation: int | None, now: datetime.datetime
) -> Condition:
    return make_condition(READY, ok, reason, message, observed_generation=generation, now=now)


def compose(
    previous: Mapping[str, Any],
    *,
    generation: int | None,
    now: datetime.datetime,
    conditions: list[Condition],
    fields: Mapping[str, Any],
) -> dict[str, Any]:
    """The new status: ``previous`` with ``fields`` replaced (None deletes) and conditions merged."""
    status = {k: v for k, v in previous.items() if k != "conditions"}
    for key, value in fields.items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    if generation is not None:
        status["observedGeneration"] = generation
    status["conditions"] = merge_conditions(previous.get("conditions"), conditions)
    return status


def worth_writing(previous: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether ``new`` says something ``previous`` does not: it :func:`changed`, and not only by
    dropping ``history`` entries that aged out.

    Aged-out entries are harmless where they are (every window reads them against its own
    cutoff, also after a restart), so removing them waits for the next write that has something
    to say: a settled ScaledApp writes nothing, rather than once per entry as it ages out.
    """
    if not changed(previous, new):
        return False
    rest_before = {k: v for k, v in previous.items() if k != "history"}
    rest_after = {k: v for k, v in new.items() if k != "history"}
    if changed(rest_before, rest_after):
        return True
    return not _history_pruned(previous.get("history") or {}, new.get("history") or {})


def _history_pruned(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """``after`` is ``before`` with only its oldest recommendations and scale events dropped."""
    for key in ("recommendations", "scaleEvents"):
        old, kept = list(before.get(key) or []), list(after.get(key) or [])
        if len(kept) > len(old) or old[len(old) - len(kept) :] != kept:
            return False
    others = set(before) | set(after)
    return all(before.get(k) == after.get(k) for k in others - {"recommendations", "scaleEvents"})


def changed(previous: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    def strip(s: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in s.items() if k != "conditions"}

    if strip(previous) != strip(new):
        return True
    return not conditions_equal_ignoring_time(previous.get("conditions"), new.get("conditions"))
