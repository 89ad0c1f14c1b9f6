"""The scaling policy: from metric readings to a desired replica count, with its explanation.

Pure: no I/O, no clock (``now`` is a parameter), no mutation (the updated history is returned).

The maths, stated once (Kubernetes HPA v2, kubernetes.io/docs/concepts/workloads/autoscaling/
horizontal-pod-autoscale/, and the HPA controller's ``normalizeDesiredReplicasWithBehaviors``):

1. Per metric, a recommendation:
   What a number means is the source's declaration (``sources.Meaning``), never its type name:
   - ``Value`` / ``Utilization``, and ``AverageValue`` of a per-pod source (``PER_POD``: the
     reading is already an average over the pods): ``ratio = value / target``,
     ``desired = ceil(current * ratio)``.
   - ``AverageValue`` of a total (``TOTAL``: prometheus, http): the target is per replica:
     ``desired = ceil(value / target)``, ``ratio = value / (target * current)``.
   - A floor (``FLOOR``: cron's ``desiredReplicas`` inside its window, 0 outside): the value is the
     recommendation, and the max over metrics makes it a floor.
   - Tolerance: when ``1 - scaleDown.tolerance <= ratio <= 1 + scaleUp.tolerance`` the metric
     recommends ``current`` (no change).
2. The recommendation is the **max** over metrics. When a metric failed and the others recommend
   fewer replicas than ``current``, the count is held (never scale down on missing data); scaling
   up still happens. A metric failing ``fallback.failureThreshold`` times in a row recommends
   ``fallback.replicas`` instead. All metrics failing: the count is held.
3. Scale to zero and back, in the same loop (only when ``minReplicas`` is 0): a metric is active
   when its value is strictly greater than its ``activationThreshold``. At zero, any active metric
   recommends at least 1, none keeps zero. Above zero, when every metric is readable and none is
   active the recommendation is 0; it takes effect once ``cooldownPeriod`` seconds of inactivity
   and ``initialCooldownPeriod`` seconds since creation have passed (before that the floor is 1),
   and it goes through the stabilization window and the scale-down policies like any other
   scale-down, all the way to zero.
4. Bounds first: ``current > max`` → ``max``; ``current < min`` → ``min`` (no behaviour applies).
5. Stabilization: with ``up`` the lowest and ``down`` the highest of (this recommendation and
   the recommendations seen within the direction's window), the result is ``current`` brought
   into ``[up, down]``.
6. Rate: for each policy, ``periodStart = current - added + removed`` over its ``periodSeconds``;
   scale-up limit ``periodStart + value`` (Pods) or ``ceil(periodStart * (1 + value/100))``
   (Percent); scale-down limit ``periodStart - value`` or ``trunc(periodStart * (1 - value/100))``
   (Percent: the allowed change rounds up). ``selectPolicy: Max`` takes the policy allowing the
   biggest change, ``Min`` the smallest, ``Disabled`` forbids that direction. The limits never
   move against the direction (a limit below ``current`` when scaling up means "hold").
7. Clamp to ``[min, max]`` (with the zero floor of 3).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from kopfscale.scaledapp.history import History
from kopfscale.scaledapp.sources import Meaning
from kopfscale.scaledapp.spec import MetricSpec, ScaledAppSpec, ScalingRules, Target

# Reasons (CamelCase, as in the HPA's conditions) for what shaped a decision.
WITHIN_RANGE = "DesiredWithinRange"
SCALE_UP_LIMIT = "ScaleUpLimit"
SCALE_DOWN_LIMIT = "ScaleDownLimit"
SCALE_UP_DISABLED = "ScaleUpDisabled"
SCALE_DOWN_DISABLED = "ScaleDownDisabled"
TOO_MANY_REPLICAS = "TooManyReplicas"
TOO_FEW_REPLICAS = "TooFewReplicas"
COOLDOWN = "CooldownPending"
INITIAL_COOLDOWN = "InitialCooldownPending"
PAUSED = "Paused"
ALL_METRICS_FAILED = "AllMetricsFailed"

ROUNDING_EPSILON = 1e-9  # 150/50 must be 3, not 3.0000000000000004 rounded up to 4


class Reading(Protocol):
    """What the policy needs of a metric source's result (``sources.MetricReading`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def value(self) -> float | None: ...

    @property
    def error(self) -> str | None: ...


@dataclass(frozen=True)
class MetricEvaluation:
    name: str
    type: str
    target: Target | None
    value: float | None
    error: str | None
    ratio: float | None  # value relative to its target (None for a floor, at zero replicas, or on error)
    recommendation: int | None  # None: failed and not (yet) in fallback
    active: bool | None  # None: unknown (failed)
    within_tolerance: bool
    fallback: bool
    failures: int  # consecutive failures, capped at the failure threshold


@dataclass(frozen=True)
class Decision:
    current: int
    desired: int
    recommendation: int  # combined over metrics, after activation (what the windows remember)
    stabilized: int  # after the stabilization windows, before the rate limits and bounds
    metrics: tuple[MetricEvaluation, ...]
    driver: str | None  # the metric whose recommendation won the max
    reason: str  # what limited the decision last (one of the constants above)
    limited: bool  # whether rate limits, bounds or a cooldown changed the stabilized value
    stabilized_by_window: bool
    held_for_missing: bool  # a scale-down was skipped because a metric failed
    active: bool | None
    fallback: bool
    all_failed: bool
    zero_wait_seconds: float | None  # seconds until zero is allowed, when it is the next step
    history: History
    explanation: str

    @property
    def direction(self) -> int:
        return (self.desired > self.current) - (self.desired < self.current)


def _ceil(x: float) -> int:
    return math.ceil(x - ROUNDING_EPSILON)


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e6 else f"{x:.3e}"


def _within(ratio: float, up: ScalingRules, down: ScalingRules) -> bool:
    return (1.0 - down.tolerance) <= ratio <= (1.0 + up.tolerance)


def evaluate_metric(
    metric: MetricSpec,
    reading: Reading | None,
    current: int,
    spec: ScaledAppSpec,
    previous_failures: int,
) -> MetricEvaluation:
    error = None if reading is not None else "no reading"
    value = reading.value if reading is not None else None
    if reading is not None:
        error = reading.error
        if error is None and (value is None or not math.isfinite(value)):
            error = f"not a finite number: {value!r}"
    if error is not None:
        failures = min(previous_failures + 1, max(spec.failure_threshold, 1))
        in_fallback = spec.fallback is not None and failures >= spec.fallback.failure_threshold
        return MetricEvaluation(
            name=metric.name,
            type=metric.type,
            target=metric.target,
            value=None,
            error=error,
            ratio=None,
            recommendation=spec.fallback.replicas if (in_fallback and spec.fallback) else None,
            active=(spec.fallback.replicas > 0) if (in_fallback and spec.fallback) else None,
            within_tolerance=False,
            fallback=in_fallback,
            failures=failures,
        )
    assert value is not None
    active = value > metric.activation_threshold
    behavior = spec.behavior
    ratio: float | None = None
    within = False
    if metric.meaning is Meaning.FLOOR or metric.target is None:
        recommendation = max(_ceil(value), 0)
    elif metric.target.type == "AverageValue" and metric.meaning is Meaning.TOTAL:
        # External metric semantics: a total divided by the per-replica target.
        recommendation = _ceil(value / metric.target.value)
        if current > 0:
            ratio = value / (metric.target.value * current)
            within = _within(ratio, behavior.scale_up, behavior.scale_down)
    else:
        ratio = value / metric.target.value
        within = current > 0 and _within(ratio, behavior.scale_up, behavior.scale_down)
        recommendation = _ceil(current * ratio)
    if within:
        recommendation = current
    return MetricEvaluation(
        name=metric.name,
        type=metric.type,
        target=metric.target,
        value=value,
        error=None,
        ratio=ratio,
        recommendation=max(recommendation, 0),
        active=active,
        within_tolerance=within,
        fallback=False,
        failures=0,
    )


def _rate_limit(
    rules: ScalingRules, current: int, history: History, now: datetime.datetime, *, up: bool
) -> int | None:
    """The furthest count the policies allow in this direction; None when the direction is disabled."""
    if rules.select_policy == "Disabled":
        return None
    limits: list[int] = []
    for policy in rules.policies:
        added, removed = history.change_in_period(now, policy.period_seconds)
        period_start = current - added + removed
        if up:
            if policy.type == "Pods":
                limits.append(period_start + policy.value)
            else:
                limits.append(_ceil(period_start * (1 + policy.value / 100)))
        elif policy.type == "Pods":
            limits.append(period_start - policy.value)
        else:
            limits.append(int(period_start * (1 - policy.value / 100)))
    if not limits:
        return None
    # Up: Max picks the highest limit, Min the lowest. Down: Max (biggest change) picks the lowest.
    biggest_change = rules.select_policy == "Max"
    return (max if biggest_change == up else min)(limits)


def keep_seconds(spec: ScaledAppSpec) -> tuple[int, int]:
    """How long recommendations and scale events must be remembered."""
    b = spec.behavior
    windows = max(b.scale_up.stabilization_window_seconds, b.scale_down.stabilization_window_seconds)
    periods = max([p.period_seconds for p in (*b.scale_up.policies, *b.scale_down.policies)] or [0])
    return windows, periods


def decide(
    spec: ScaledAppSpec,
    current: int,
    readings: Sequence[Reading],
    history: History,
    *,
    now: datetime.datetime,
    created: datetime.datetime | None = None,
) -> Decision:
    by_name = {r.name: r for r in readings}
    metrics = tuple(
        evaluate_metric(m, by_name.get(m.name), current, spec, history.failures.get(m.name, 0))
        for m in spec.metrics
    )
    history = history.with_failures({m.name: m.failures for m in metrics})
    valid = [m for m in metrics if m.recommendation is not None]
    missing = any(m.recommendation is None for m in metrics)
    fallback = any(m.fallback for m in metrics)

    # --- 2. combine --------------------------------------------------------------------------
    driver: str | None = None
    recommendation = current
    if valid:
        best = max(valid, key=lambda m: m.recommendation or 0)
        driver, recommendation = best.name, best.recommendation or 0
    held_for_missing = bool(valid) and missing and recommendation < current
    if held_for_missing:
        recommendation = current

    # --- 3. activation -----------------------------------------------------------------------
    known = not missing
    any_active = any(m.active for m in metrics)
    active: bool | None = True if any_active else (False if known else None)
    history = history.with_activity(now, active)
    floor = spec.min_replicas
    floor_reason = TOO_FEW_REPLICAS
    zero_wait: float | None = None
    if spec.min_replicas == 0 and valid:
        if current == 0:
            recommendation = max(recommendation, 1) if any_active else 0
        elif active is False:
            recommendation = 0
            since = history.inactive_since or now
            cooldown_left = spec.cooldown_period - (now - since).total_seconds()
            initial_left = (
                spec.initial_cooldown_period - (now - created).total_seconds() if created is not None else 0.0
            )
            zero_wait = max(cooldown_left, initial_left, 0.0)
            if zero_wait > 0:
                floor = 1
                floor_reason = INITIAL_COOLDOWN if initial_left >= cooldown_left else COOLDOWN
        else:
            recommendation = max(recommendation, 1)

    def done(desired: int, reason: str, limited: bool, stabilized: int, by_window: bool = False) -> Decision:
        decision = Decision(
            current=current,
            desired=desired,
            recommendation=recommendation,
            stabilized=stabilized,
            metrics=metrics,
            driver=driver,
            reason=reason,
            limited=limited,
            stabilized_by_window=by_window,
            held_for_missing=held_for_missing,
            active=active,
            fallback=fallback,
            all_failed=not valid,
            zero_wait_seconds=zero_wait,
            history=history,
            explanation="",
        )
        return _with_explanation(decision, spec)

    # --- paused / failed / bounds first ------------------------------------------------------
    if spec.paused:
        return done(current, PAUSED, False, current)
    if current > spec.max_replicas:
        return done(spec.max_replicas, TOO_MANY_REPLICAS, True, current)
    if current < spec.min_replicas:
        return done(spec.min_replicas, TOO_FEW_REPLICAS, True, current)
    if not valid:
        return done(current, ALL_METRICS_FAILED, False, current)

    # --- 5. stabilization ----------------------------------------------------------------------
    up_rules, down_rules = spec.behavior.scale_up, spec.behavior.scale_down
    if not history.recommendations:
        # As the HPA does: a fresh (or restarted without history) controller does not scale
        # down before it has watched the scale-down window.
        history = history.record_recommendation(now, current, keep_seconds(spec)[0])
    up_cutoff = now - datetime.timedelta(seconds=up_rules.stabilization_window_seconds)
    down_cutoff = now - datetime.timedelta(seconds=down_rules.stabilization_window_seconds)
    up_bound = min([recommendation, *history.recommendations_after(up_cutoff)])
    down_bound = max([recommendation, *history.recommendations_after(down_cutoff)])
    stabilized = min(max(current, up_bound), down_bound)
    history = history.record_recommendation(now, recommendation, keep_seconds(spec)[0])
    by_window = stabilized != recommendation

    # --- 6/7. rate limits and bounds -----------------------------------------------------------
    if stabilized > current:
        limit = _rate_limit(up_rules, current, history, now, up=True)
        if limit is None:
            return done(current, SCALE_UP_DISABLED, True, stabilized, by_window)
        if current == 0:
            limit = max(limit, 1)  # activation: 0 -> 1 is always within the rate
        limit = max(limit, current)
        if spec.max_replicas > limit:
            ceiling, reason = limit, SCALE_UP_LIMIT
        else:
            ceiling, reason = spec.max_replicas, TOO_MANY_REPLICAS
        if stabilized > ceiling:
            return done(ceiling, reason, True, stabilized, by_window)
    elif stabilized < current:
        limit = _rate_limit(down_rules, current, history, now, up=False)
        if limit is None:
            return done(current, SCALE_DOWN_DISABLED, True, stabilized, by_window)
        limit = min(limit, current)
        if floor < limit:
            bottom, reason = limit, SCALE_DOWN_LIMIT
        else:
            bottom, reason = floor, floor_reason
        if stabilized < bottom:
            return done(bottom, reason, True, stabilized, by_window)
    return done(stabilized, WITHIN_RANGE, False, stabilized, by_window)


_REASON_TEXT = {
    SCALE_UP_LIMIT: "limited by the scale-up policies",
    SCALE_DOWN_LIMIT: "limited by the scale-down policies",
    SCALE_UP_DISABLED: "scale-up is disabled (selectPolicy: Disabled)",
    SCALE_DOWN_DISABLED: "scale-down is disabled (selectPolicy: Disabled)",
    TOO_MANY_REPLICAS: "clamped to maxReplicas",
    TOO_FEW_REPLICAS: "clamped to minReplicas",
    COOLDOWN: "scale to zero waits for the cooldown period",
    INITIAL_COOLDOWN: "scale to zero waits for the initial cooldown period",
    PAUSED: "paused: the count is held",
    ALL_METRICS_FAILED: "no metric could be read: the count is held",
}


def describe_metric(m: MetricEvaluation) -> str:
    if m.error is not None:
        text = f"{m.name}: error ({m.error})"
        if m.fallback:
            text += f", fallback -> {m.recommendation}"
        return text
    assert m.value is not None
    if m.target is None:
        return f"{m.name}: {_fmt(m.value)} ({m.type} floor) -> {m.recommendation}"
    unit = "%" if m.target.type == "Utilization" else ""
    text = f"{m.name}: {_fmt(m.value)}{unit} (target {m.target.type} {_fmt(m.target.value)}{unit}"
    if m.ratio is not None:
        text += f", ratio {m.ratio:.2f}"
    text += ")"
    if m.within_tolerance:
        text += " within tolerance"
    return f"{text} -> {m.recommendation}"


def _with_explanation(d: Decision, spec: ScaledAppSpec) -> Decision:
    parts = ["; ".join(describe_metric(m) for m in d.metrics)]
    if d.all_failed:
        parts.append(_REASON_TEXT[ALL_METRICS_FAILED])
    else:
        parts.append(f"max {d.recommendation}" + (f" ({d.driver})" if d.driver else ""))
    if d.held_for_missing:
        parts.append("scale-down skipped: a metric is missing")
    if d.active is False and spec.min_replicas == 0:
        parts.append("inactive")
    if d.stabilized_by_window:
        direction = "scale-down" if d.stabilized > d.recommendation else "scale-up"
        parts.append(f"{direction} stabilization window holds {d.stabilized}")
    if d.reason != WITHIN_RANGE and (d.limited or d.reason in (PAUSED, ALL_METRICS_FAILED)):
        text = _REASON_TEXT.get(d.reason, d.reason)
        if d.reason in (COOLDOWN, INITIAL_COOLDOWN) and d.zero_wait_seconds is not None:
            text += f" ({d.zero_wait_seconds:.0f}s left)"
        if d.reason != ALL_METRICS_FAILED:
            parts.append(text)
    parts.append(f"{d.current} -> {d.desired}")
    return replace(d, explanation=" | ".join(parts))
