"""The scaling policy: from metric readings to a desired replica count, with its explanation.

Pure: no I/O, no clock (``now`` is a parameter), no mutation (the updated history is returned).

The maths, stated once (Kubernetes HPA v2, kubernetes.io/docs/concepts/workloads/autoscaling/
horizontal-pod-autoscale/, and the HPA controller's ``normalizeDesiredReplicasWithBehaviors``):

1. Per metric, a recommendation (:func:`evaluate_metric`):
   What a number means is the source's declaration (``sources.Meaning``), never its type name:
   - ``Utilization`` and ``AverageValue`` of a per-pod source (``PER_POD``: the reading is
     already an average over the pods): ``ratio = value / target``,
     ``desired = ceil(current * ratio)``.
   - ``Value`` of a total (``TOTAL``: prometheus, http; the HPA's External/Object ``Value``):
     ``ratio = value / target``, ``desired = ceil(ratio * readyPods)``: the Pods Running and
     Ready, not ``spec.replicas`` (``getUsageRatioReplicaCount``).
   - ``AverageValue`` of a total: the target is per replica: ``desired = ceil(value / target)``,
     ``ratio = value / (target * statusReplicas)``, and within the tolerance the proposal is
     ``statusReplicas``, the Pods the workload has (``GetExternalPerPodMetricReplicas``).
   - A floor (``FLOOR``: cron's ``desiredReplicas`` inside its window, 0 outside): the value is the
     recommendation, and the max over metrics makes it a floor.
   - Tolerance: when ``1 - scaleDown.tolerance <= ratio <= 1 + scaleUp.tolerance`` the metric
     recommends ``current`` (no change; ``statusReplicas`` for an ``AverageValue`` total).
2. The recommendation is the **max** over metrics (:func:`combine`). When a metric failed and the
   others recommend fewer replicas than ``current``, the count is held (never scale down on missing
   data); scaling up still happens. A metric failing ``fallback.failureThreshold`` times in a row
   recommends ``fallback.replicas`` instead once its consecutive failures *exceed*
   ``fallback.failureThreshold`` (KEDA's ``pkg/fallback``: the (N+1)-th failure in a row). All
   metrics failing: the count is held.
3. Scale to zero and back, in the same loop (only when ``minReplicas`` is 0; :func:`activate`): a
   metric is active when its value is strictly greater than its ``activationThreshold``. At zero,
   any active metric recommends at least 1, none keeps zero. Above zero, when every metric is
   readable and none is active the recommendation is 0; it takes effect once ``cooldownPeriod``
   seconds of inactivity and ``initialCooldownPeriod`` seconds since creation have passed (before
   that the floor is 1), and it goes through the stabilization window and the scale-down policies
   like any other scale-down, all the way to zero.
4. What overrides the maths (:func:`held`): ``spec.paused`` holds ``current``; ``current > max`` →
   ``max``; ``current < min`` → ``min`` (no behaviour applies); no metric readable holds ``current``.
5. Stabilization (:func:`stabilize`): with ``up`` the lowest and ``down`` the highest of (this
   recommendation and the recommendations seen within the direction's window), the result is
   ``current`` brought into ``[up, down]``. Without ``behavior`` (the HPA controller's legacy path,
   ``stabilizeRecommendation``): the highest of this recommendation and those seen within the last
   300 s, the sample exactly 300 s old included.
6. Rate (:func:`limit`): for each policy, ``periodStart = current - added + removed`` over its
   ``periodSeconds``; scale-up limit ``periodStart + value`` (Pods) or ``ceil(periodStart * (1 +
   value/100))`` (Percent); scale-down limit ``periodStart - value`` or ``trunc(periodStart * (1 -
   value/100))`` (Percent: the allowed change rounds up). ``selectPolicy: Max`` takes the policy
   allowing the biggest change, ``Min`` the smallest, ``Disabled`` forbids that direction. The
   limits never move against the direction (a limit below ``current`` when scaling up means "hold").
   Without ``behavior`` (``convertDesiredReplicasWithRules``): a scale-up is limited to
   ``max(2 * current, 4)`` per round and a scale-down is not rate-limited.
7. Clamp to ``[min, max]`` (with the zero floor of 3).

:func:`step` is one whole round as the operator runs it (decide, then record the scale event in
mode Auto); ``kopfscale simulate`` replays traces through it.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from kopfscale.scaledapp.history import History
from kopfscale.scaledapp.sources import Meaning, PodSample
from kopfscale.scaledapp.sources.base import usage_value
from kopfscale.scaledapp.spec import (
    LEGACY_DOWNSCALE_WINDOW,
    LEGACY_SCALE_UP_FACTOR,
    LEGACY_SCALE_UP_MINIMUM,
    MetricSpec,
    ScaledAppSpec,
    ScalingRules,
    Target,
)

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
    failures: int  # consecutive failures, capped one above the failure threshold
    pods: int | None = None  # the Pod count the proposal was computed over (see Proposal)
    note: str | None = None  # how the Pods counted, when that is not simply ``current``
    adjusted_ratio: float | None = None  # resource: the ratio once set-aside Pods were counted


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


#: No proposal exceeds the largest replica count Kubernetes accepts (int32).
MAX_PROPOSAL = 2**31 - 1


def _ceil(x: float) -> int:
    if not x < MAX_PROPOSAL:  # also inf (a finite ratio times many replicas) and NaN
        return MAX_PROPOSAL
    return math.ceil(x - ROUNDING_EPSILON)


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e6 else f"{x:.3e}"


def _pods(n: int, kind: str = "") -> str:
    return f"{n} {kind}Pod{'' if n == 1 else 's'}"


def _within(ratio: float, up: ScalingRules, down: ScalingRules) -> bool:
    """Inside the tolerance band, its edges included (a ratio on an edge that float division put a
    hair outside, 0.5199999… for 0.52, is still on the edge)."""
    eps = ROUNDING_EPSILON
    return (1.0 - down.tolerance) - eps <= ratio <= (1.0 + up.tolerance) + eps


@dataclass(frozen=True)
class Pods:
    """What a round knows of the workload's Pods besides ``spec.replicas`` (``current``).

    The HPA's replica calculator reads them from its Pod informer; kopfscale from the owned
    Deployment's status, or a Pod list by the ``/scale`` selector when a metric needs it. ``None``
    means "as many as ``current``": all a simulation can assume.
    """

    replicas: int | None = None  # the scale's status.replicas: the Pods the workload has
    ready: int | None = None  # Pods Running and Ready (the HPA's getReadyPodsCount)
    error: str | None = None  # why the ready Pods could not be counted


ALL_READY = Pods()


@dataclass(frozen=True)
class Proposal:
    """Step 1 for one readable metric: what it proposes and the numbers that explain it."""

    recommendation: int
    ratio: float | None = None
    within_tolerance: bool = False
    pods: int | None = None  # the Pod count the proposal was computed over, when there is one
    note: str | None = None  # how the Pods counted, when that is not simply ``current``
    adjusted_ratio: float | None = None  # resource: the ratio once set-aside Pods were counted


def propose_floor(value: float) -> Proposal:
    """A floor (cron): the value is the recommendation."""
    return Proposal(max(_ceil(value), 0))


def propose_total_per_pod(
    value: float, target: float, current: int, pods: Pods, spec: ScaledAppSpec
) -> Proposal:
    """A total against a per-Pod target (the HPA's ``GetExternalPerPodMetricReplicas``): the
    tolerance is judged per Pod the workload has (``status.replicas``), which are also what a
    ratio within the tolerance proposes; outside it, ``ceil(value / target)``."""
    have = current if pods.replicas is None else pods.replicas
    recommendation = _ceil(value / target)
    if have == 0:  # no Pods: no ratio (the HPA's is infinite), the total alone decides
        return Proposal(recommendation)
    ratio = value / (target * have)
    within = _within(ratio, spec.behavior.scale_up, spec.behavior.scale_down)
    note = None if have == current else f"over {_pods(have)}"
    return Proposal(have if within else recommendation, ratio, within, have, note)


def propose_total(
    value: float, target: float, current: int, pods: Pods, spec: ScaledAppSpec
) -> Proposal | str:
    """A total against a ``Value`` target (the HPA's ``getUsageRatioReplicaCount``): outside the
    tolerance, ``ceil(ratio * ready Pods)`` — the Pods Running and Ready, not ``spec.replicas``.
    A string: why it cannot be computed (the ready Pods could not be counted)."""
    ratio = value / target
    if current == 0:  # activation decides 0 -> 1
        return Proposal(0, ratio)
    if _within(ratio, spec.behavior.scale_up, spec.behavior.scale_down):
        return Proposal(current, ratio, True)
    if pods.error is not None:
        return f"{_fmt(value)} read, but the ready Pods could not be counted: {pods.error}"
    ready = current if pods.ready is None else pods.ready
    note = None if ready == current else f"x {_pods(ready, 'ready ')}"
    return Proposal(_ceil(ratio * ready), ratio, False, ready, note)


def propose_ratio(value: float, target: float, current: int, spec: ScaledAppSpec) -> Proposal:
    """Already an average over the Pods (a ``resource`` reading without its Pods): ``ceil(current
    * ratio)``, the count unchanged within the tolerance."""
    ratio = value / target
    if current > 0 and _within(ratio, spec.behavior.scale_up, spec.behavior.scale_down):
        return Proposal(current, ratio, True, current)
    return Proposal(_ceil(current * ratio), ratio, False, current if current > 0 else None)


def _target_milli(target: float) -> int:
    """An ``AverageValue`` target in milli-units, rounded up (the HPA's ``MilliValue``)."""
    return math.ceil(round(target * 1000, 6))


def propose_pods(sample: PodSample, target: float, current: int, spec: ScaledAppSpec) -> Proposal:
    """A ``resource`` reading with its Pods, as the HPA's ``GetResourceReplicas`` (Utilization)
    and ``calcPlainMetricReplicas`` (AverageValue) count them.

    With no Pod set aside (or only unready ones and no scale-up), ``ceil(ratio * readyPods)``.
    Otherwise the set-aside Pods are counted: Pods without metrics at 100 % of their request
    (``AverageValue``: at the target) when the ratio proposes a scale-down and at 0 % when it
    proposes a scale-up; unready Pods at 0 %, on a scale-up only. If the new ratio is within the
    tolerance, or points the other way, or its count does, the count stays.
    """
    up, down = spec.behavior.scale_up, spec.behavior.scale_down
    ready, unready, missing = sample.ready, sample.unready, sample.missing
    ratio = sample.value / target
    with_unready = unready.count > 0 and ratio > 1.0
    if not with_unready and missing.count == 0:
        note = _pods_note(sample, current, ready.count, [])
        if _within(ratio, up, down):
            return Proposal(current, ratio, True, ready.count, note)
        return Proposal(_ceil(ratio * ready.count), ratio, False, ready.count, note)

    usages, requests = list(ready.usages), list(ready.requests)
    counted: list[str] = []
    if missing.count and ratio != 1.0:
        if ratio < 1.0:  # on a scale-down, as if they used their request (or exactly the target)
            if sample.utilization:
                share = max(100.0, target)
                usages += [int(r * share // 100) for r in missing.requests]
                counted.append(f"{_pods(missing.count)} without metrics at {_fmt(share)}%")
            else:
                usages += [_target_milli(target)] * missing.count
                counted.append(f"{_pods(missing.count)} without metrics at the target")
        else:  # on a scale-up, as if they used nothing
            usages += [0] * missing.count
            counted.append(f"{_pods(missing.count)} without metrics at 0%")
        requests += list(missing.requests)
    if with_unready:
        usages += [0] * unready.count
        requests += list(unready.requests)
        counted.append(f"{_pods(unready.count)} not ready at 0%")
    count = len(usages)
    adjusted = usage_value(sample.utilization, sum(usages), sum(requests), count) / target
    direction = "scale-up" if ratio > 1.0 else "scale-down"
    note = f"{_pods_note(sample, current, ready.count, counted)} ({direction}): ratio {adjusted:.2f}"
    note += f" over {_pods(count)}"
    if _within(adjusted, up, down):
        return Proposal(current, ratio, True, count, note, adjusted)
    if (ratio < 1.0 < adjusted) or (ratio > 1.0 > adjusted):
        return Proposal(current, ratio, False, count, note + ", the other way: no change", adjusted)
    proposal = _ceil(adjusted * count)
    if (adjusted < 1.0 and proposal > current) or (adjusted > 1.0 and proposal < current):
        note += f" asks for {proposal}, the other way: no change"
        return Proposal(current, ratio, False, count, note, adjusted)
    return Proposal(proposal, ratio, False, count, note, adjusted)


def _pods_note(sample: PodSample, current: int, ready: int, counted: list[str]) -> str | None:
    """How a resource metric's Pods counted, for the explanation; None when simply ``current``."""
    left_out = []
    if sample.unready.count and not any("not ready" in c for c in counted):
        left_out.append(f"{sample.unready.count} not ready")
    if sample.missing.count and not any("without metrics" in c for c in counted):
        left_out.append(f"{sample.missing.count} without metrics")
    if sample.ignored:
        left_out.append(f"{sample.ignored} deleted or failed")
    if not counted and not left_out and ready == current:
        return None
    text = f"over {_pods(ready, 'ready ')}"
    if left_out:
        text += f", {' + '.join(left_out)} left out"
    if counted:
        text += "; " + ", ".join(counted)
    return text


def propose(
    metric: MetricSpec,
    value: float,
    current: int,
    spec: ScaledAppSpec,
    pods: Pods,
    sample: PodSample | None = None,
) -> Proposal | str:
    """Step 1, by what the number means (``sources.Meaning``), never by the source's type."""
    target = metric.target
    if metric.meaning is Meaning.FLOOR or target is None:
        return propose_floor(value)
    if metric.meaning is Meaning.PER_POD and sample is not None and current > 0:
        return propose_pods(sample, target.value, current, spec)
    if metric.meaning is Meaning.TOTAL and target.type == "AverageValue":
        return propose_total_per_pod(value, target.value, current, pods, spec)
    if metric.meaning is Meaning.TOTAL:
        return propose_total(value, target.value, current, pods, spec)
    return propose_ratio(value, target.value, current, spec)


def needs_ready_pods(spec: ScaledAppSpec, current: int, readings: Sequence[Reading]) -> bool:
    """Whether this round's proposals need the count of ready Pods: a ``Value`` total read
    outside its tolerance while the workload has replicas (the only case the HPA counts them)."""
    by_name = {r.name: r for r in readings}
    for metric in spec.metrics:
        reading = by_name.get(metric.name)
        if metric.meaning is not Meaning.TOTAL or metric.target is None or metric.target.type != "Value":
            continue
        if reading is None or reading.error is not None or reading.value is None or current == 0:
            continue
        ratio = reading.value / metric.target.value
        if math.isfinite(ratio) and not _within(ratio, spec.behavior.scale_up, spec.behavior.scale_down):
            return True
    return False


def _read_error(metric: MetricSpec, reading: Reading | None) -> str | None:
    """Why the reading is unusable, or None."""
    if reading is None:
        return "no reading"
    value = reading.value
    if reading.error is not None:
        return reading.error
    if value is None or not math.isfinite(value):
        return f"not a finite number: {value!r}"
    target = metric.target
    if target is not None and not math.isfinite(value / target.value):
        # e.g. a target of 1e-320: the ratio overflows; report it like a failed read.
        return f"{_fmt(value)} against a target of {target.value:g} is not a finite ratio"
    return None


def evaluate_metric(
    metric: MetricSpec,
    reading: Reading | None,
    current: int,
    spec: ScaledAppSpec,
    previous_failures: int,
    pods: Pods = ALL_READY,
) -> MetricEvaluation:
    """Step 1: one metric's proposal, or its failure (and fallback)."""
    unread = MetricEvaluation(
        metric.name, metric.type, metric.target, None, None, None, None, None, False, False, 0
    )
    error = _read_error(metric, reading)
    value = reading.value if reading is not None else None
    proposal: Proposal | str | None = None
    if error is None:
        assert value is not None
        sample = getattr(reading, "pods", None)
        proposal = propose(
            metric, value, current, spec, pods, sample if isinstance(sample, PodSample) else None
        )
        if isinstance(proposal, str):
            error = proposal
    if error is not None or not isinstance(proposal, Proposal):
        failures = min(previous_failures + 1, spec.failure_threshold + 1)
        in_fallback = fallback_applies(spec, failures)
        return replace(
            unread,
            error=error,
            recommendation=spec.fallback.replicas if (in_fallback and spec.fallback) else None,
            active=(spec.fallback.replicas > 0) if (in_fallback and spec.fallback) else None,
            fallback=in_fallback,
            failures=failures,
        )
    assert value is not None
    return replace(
        unread,
        value=value,
        ratio=proposal.ratio,
        recommendation=max(proposal.recommendation, 0),
        active=value > metric.activation_threshold,
        within_tolerance=proposal.within_tolerance,
        pods=proposal.pods,
        note=proposal.note,
        adjusted_ratio=proposal.adjusted_ratio,
    )


def fallback_applies(spec: ScaledAppSpec, failures: int) -> bool:
    """KEDA's rule: a metric falls back once its consecutive failures *exceed* the threshold —
    the (N+1)-th failure in a row with ``failureThreshold: N`` (``pkg/fallback``: ``> FailureThreshold``)."""
    return spec.fallback is not None and failures > spec.fallback.failure_threshold


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
    if b.legacy:
        return LEGACY_DOWNSCALE_WINDOW, 0  # the legacy rule remembers no scale events
    windows = max(b.scale_up.stabilization_window_seconds, b.scale_down.stabilization_window_seconds)
    periods = max([p.period_seconds for p in (*b.scale_up.policies, *b.scale_down.policies)] or [0])
    return windows, periods


@dataclass(frozen=True)
class Combined:
    """Step 2: the recommendation over all metrics."""

    replicas: int
    driver: str | None  # the metric whose recommendation won the max
    held_for_missing: bool  # a scale-down was skipped because a metric failed
    any_valid: bool


def combine(metrics: Sequence[MetricEvaluation], current: int) -> Combined:
    """The max over the metrics' recommendations; a scale-down is held while any metric is missing."""
    valid = [m for m in metrics if m.recommendation is not None]
    if not valid:
        return Combined(current, None, held_for_missing=False, any_valid=False)
    best = max(valid, key=lambda m: m.recommendation or 0)
    replicas = best.recommendation or 0
    held = any(m.recommendation is None for m in metrics) and replicas < current
    return Combined(current if held else replicas, best.name, held_for_missing=held, any_valid=True)


@dataclass(frozen=True)
class Activation:
    """Step 3: scale to zero and back. ``floor`` is the lowest count allowed this round."""

    replicas: int
    active: bool | None  # None: unknown (a metric failed)
    floor: int
    floor_reason: str
    zero_wait_seconds: float | None  # seconds until zero is allowed, when it is the next step
    history: History


def activate(
    spec: ScaledAppSpec,
    current: int,
    metrics: Sequence[MetricEvaluation],
    combined: Combined,
    history: History,
    now: datetime.datetime,
    created: datetime.datetime | None,
) -> Activation:
    """0 <-> 1 by activation, and N -> 0 after the cooldowns (only with ``minReplicas: 0``)."""
    missing = any(m.recommendation is None for m in metrics)
    any_active = any(m.active for m in metrics)
    active: bool | None = True if any_active else (None if missing else False)
    history = history.with_activity(now, active)
    replicas, floor, floor_reason, zero_wait = combined.replicas, spec.min_replicas, TOO_FEW_REPLICAS, None
    if spec.min_replicas == 0 and combined.any_valid:
        if current == 0:
            replicas = max(replicas, 1) if any_active else 0
        elif active is False:
            replicas = 0
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
            replicas = max(replicas, 1)
    return Activation(replicas, active, floor, floor_reason, zero_wait, history)


@dataclass(frozen=True)
class Stabilized:
    """Step 5: the recommendation after the stabilization windows."""

    replicas: int
    by_window: bool
    history: History


def stabilize(
    spec: ScaledAppSpec, current: int, recommendation: int, history: History, now: datetime.datetime
) -> Stabilized:
    """``current`` brought into [lowest recommendation of the up window, highest of the down window]."""
    up_rules, down_rules = spec.behavior.scale_up, spec.behavior.scale_down
    keep = keep_seconds(spec)[0]
    if not history.recommendations:
        # As the HPA does: a fresh (or restarted without history) controller does not scale
        # down before it has watched the scale-down window.
        history = history.record_recommendation(now, current, keep)
    if spec.behavior.legacy:
        return _stabilize_legacy(recommendation, history, now)
    up_cutoff = now - datetime.timedelta(seconds=up_rules.stabilization_window_seconds)
    down_cutoff = now - datetime.timedelta(seconds=down_rules.stabilization_window_seconds)
    up_bound = min([recommendation, *history.recommendations_after(up_cutoff)])
    down_bound = max([recommendation, *history.recommendations_after(down_cutoff)])
    stabilized = min(max(current, up_bound), down_bound)
    history = history.record_recommendation(now, recommendation, keep)
    return Stabilized(stabilized, stabilized != recommendation, history)


def _stabilize_legacy(recommendation: int, history: History, now: datetime.datetime) -> Stabilized:
    """No ``behavior``: the highest recommendation of the last 300 s, this one included (the HPA's
    ``stabilizeRecommendation``). Unlike the behavior windows it is not a band around ``current``:
    a higher recommendation still in the window is followed up too."""
    cutoff = now - datetime.timedelta(seconds=LEGACY_DOWNSCALE_WINDOW)
    stabilized = max([recommendation, *history.recommendations_since(cutoff)])
    history = history.record_recommendation(now, recommendation, LEGACY_DOWNSCALE_WINDOW)
    return Stabilized(stabilized, stabilized != recommendation, history)


def legacy_scale_up_limit(current: int) -> int:
    """No ``behavior``: the most a round may scale up to (the HPA's ``calculateScaleUpLimit``)."""
    return max(LEGACY_SCALE_UP_FACTOR * current, LEGACY_SCALE_UP_MINIMUM)


@dataclass(frozen=True)
class Limited:
    """Steps 6-7: the final count, and the rule that set it."""

    replicas: int
    reason: str
    limited: bool


def limit(
    spec: ScaledAppSpec,
    current: int,
    stabilized: int,
    floor: int,
    floor_reason: str,
    history: History,
    now: datetime.datetime,
) -> Limited:
    """The behavior policies' rate limits in the direction of change, then the bounds."""
    if spec.behavior.legacy:
        return _limit_legacy(spec, current, stabilized, floor, floor_reason)
    if stabilized > current:
        rate = _rate_limit(spec.behavior.scale_up, current, history, now, up=True)
        if rate is None:
            return Limited(current, SCALE_UP_DISABLED, True)
        if current == 0:
            rate = max(rate, 1)  # activation: 0 -> 1 is always within the rate
        rate = max(rate, current)
        ceiling, reason = (
            (rate, SCALE_UP_LIMIT) if spec.max_replicas > rate else (spec.max_replicas, TOO_MANY_REPLICAS)
        )
        if stabilized > ceiling:
            return Limited(ceiling, reason, True)
    elif stabilized < current:
        rate = _rate_limit(spec.behavior.scale_down, current, history, now, up=False)
        if rate is None:
            return Limited(current, SCALE_DOWN_DISABLED, True)
        rate = min(rate, current)
        bottom, reason = (rate, SCALE_DOWN_LIMIT) if floor < rate else (floor, floor_reason)
        if stabilized < bottom:
            return Limited(bottom, reason, True)
    return Limited(stabilized, WITHIN_RANGE, False)


def _limit_legacy(
    spec: ScaledAppSpec, current: int, stabilized: int, floor: int, floor_reason: str
) -> Limited:
    """No ``behavior`` (the HPA's ``convertDesiredReplicasWithRules``): up to max(2 x current, 4)
    per round, never above ``maxReplicas``; a scale-down only stops at the floor."""
    up_limit = legacy_scale_up_limit(current)
    ceiling, reason = (
        (up_limit, SCALE_UP_LIMIT) if spec.max_replicas > up_limit else (spec.max_replicas, TOO_MANY_REPLICAS)
    )
    if stabilized < floor:
        return Limited(floor, floor_reason, True)
    if stabilized > ceiling:
        return Limited(ceiling, reason, True)
    return Limited(stabilized, WITHIN_RANGE, False)


def held(spec: ScaledAppSpec, current: int, any_valid: bool) -> Limited | None:
    """Step 4: what overrides the maths: pause, a count outside the bounds, no metric at all."""
    if spec.paused:
        return Limited(current, PAUSED, False)
    if current > spec.max_replicas:
        return Limited(spec.max_replicas, TOO_MANY_REPLICAS, True)
    if current < spec.min_replicas:
        return Limited(spec.min_replicas, TOO_FEW_REPLICAS, True)
    if not any_valid:
        return Limited(current, ALL_METRICS_FAILED, False)
    return None


def decide(
    spec: ScaledAppSpec,
    current: int,
    readings: Sequence[Reading],
    history: History,
    *,
    now: datetime.datetime,
    created: datetime.datetime | None = None,
    pods: Pods = ALL_READY,
    assume_scaled: bool = False,
) -> Decision:
    """The numbered steps of the module docstring, in order. ``pods``: what the round knows of the
    workload's Pods (:class:`Pods`; by default every replica exists and is ready). ``assume_scaled``:
    the history also records the scale event, as after a successful write in mode Auto (see :data:`step`)."""
    by_name = {r.name: r for r in readings}
    metrics = tuple(
        evaluate_metric(m, by_name.get(m.name), current, spec, history.failures.get(m.name, 0), pods)
        for m in spec.metrics
    )  # 1
    history = history.with_failures({m.name: m.failures for m in metrics})
    combined = combine(metrics, current)  # 2
    activation = activate(spec, current, metrics, combined, history, now, created)  # 3
    history = activation.history
    stabilized: Stabilized | None = None
    final = held(spec, current, combined.any_valid)  # 4
    if final is None:
        stabilized = stabilize(spec, current, activation.replicas, history, now)  # 5
        history = stabilized.history
        final = limit(
            spec, current, stabilized.replicas, activation.floor, activation.floor_reason, history, now
        )  # 6, 7
    decision = Decision(
        current=current,
        desired=final.replicas,
        recommendation=activation.replicas,
        stabilized=stabilized.replicas if stabilized else current,
        metrics=metrics,
        driver=combined.driver,
        reason=final.reason,
        limited=final.limited,
        stabilized_by_window=stabilized.by_window if stabilized else False,
        held_for_missing=combined.held_for_missing,
        active=activation.active,
        fallback=any(m.fallback for m in metrics),
        all_failed=not combined.any_valid,
        zero_wait_seconds=activation.zero_wait_seconds,
        history=history,
        explanation="",
    )
    decision = _with_explanation(decision, spec)
    if assume_scaled and spec.mode == "Auto" and decision.desired != current:
        return replace(decision, history=record_scaling(decision, spec, now))
    return decision


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
        text += f", ratio {m.ratio:.2f}" if abs(m.ratio) < 1e6 else f", ratio {m.ratio:.3e}"
    if m.note:
        text += f" {m.note}"
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
        if d.reason == SCALE_UP_LIMIT and spec.behavior.legacy:
            text = (
                f"limited by the scale-up limit without behavior: max(2 x {d.current}, 4) = "
                f"{legacy_scale_up_limit(d.current)}"
            )
        if d.reason in (COOLDOWN, INITIAL_COOLDOWN) and d.zero_wait_seconds is not None:
            text += f" ({d.zero_wait_seconds:.0f}s left)"
        if d.reason != ALL_METRICS_FAILED:
            parts.append(text)
    parts.append(f"{d.current} -> {d.desired}")
    return replace(d, explanation=" | ".join(parts))


def record_scaling(decision: Decision, spec: ScaledAppSpec, now: datetime.datetime) -> History:
    """The history after the workload was scaled as ``decision`` says (the rate limits count it)."""
    change = decision.desired - decision.current
    return decision.history.record_scale_event(now, change, keep_seconds(spec)[1])


#: One round as the operator runs it when the scaling succeeds: :func:`decide`, then in mode
#: ``Auto`` the scale event :func:`record_scaling` adds. ``Decision.history`` is what the next
#: round starts from; the simulator (``kopfscale simulate``) replays traces through this.
step = functools.partial(decide, assume_scaled=True)
