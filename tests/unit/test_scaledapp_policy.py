"""The scaling policy against the HPA documentation's own examples, plus KEDA-style zero scaling.

Examples quoted from kubernetes.io/docs/concepts/workloads/autoscaling/horizontal-pod-autoscale/.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from kopfscale.scaledapp import policy
from kopfscale.scaledapp.history import History
from kopfscale.scaledapp.policy import Decision, decide, keep_seconds
from kopfscale.scaledapp.spec import ScaledAppSpec, parse

NOW = datetime.datetime(2025, 3, 3, 12, 0, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class R:
    name: str
    value: float | None = None
    error: str | None = None


def seconds(n: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=n)


def value_metric(name: str = "m", target: float = 100, type_: str = "Value", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "http",
        "http": {"url": "http://x/", "valueLocation": "$.v"},
        "target": {"type": type_, "value": target},
        **extra,
    }


def make(metrics: list[dict[str, Any]] | None = None, **spec: Any) -> ScaledAppSpec:
    raw: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1,
        "maxReplicas": 100,
        "metrics": metrics or [value_metric()],
    }
    raw.update(spec)
    return parse(raw)


def no_windows(**behavior: Any) -> dict[str, Any]:
    up = {"stabilizationWindowSeconds": 0, **behavior.get("scaleUp", {})}
    down = {"stabilizationWindowSeconds": 0, **behavior.get("scaleDown", {})}
    return {"scaleUp": up, "scaleDown": down}


def once(
    spec: ScaledAppSpec,
    current: int,
    values: Mapping[str, float | str],
    history: History | None = None,
    *,
    now: datetime.datetime = NOW,
    created: datetime.datetime | None = None,
) -> Decision:
    readings = [R(k, error=v) if isinstance(v, str) else R(k, value=v) for k, v in values.items()]
    return decide(spec, current, readings, history or History(), now=now, created=created)


class Sim:
    """Runs the policy over time in Auto mode: decisions are applied, scale events recorded."""

    def __init__(self, spec: ScaledAppSpec, replicas: int, created: datetime.datetime = NOW) -> None:
        self.spec, self.replicas, self.now, self.created = spec, replicas, created, created
        self.history = History()
        self.log: list[tuple[datetime.datetime, int, int]] = []  # (time, from, to)
        self.last: Decision | None = None

    def step(self, values: Mapping[str, float | str], after: float = 0) -> int:
        self.now += seconds(after)
        d = once(self.spec, self.replicas, values, self.history, now=self.now, created=self.created)
        self.history = d.history
        if d.desired != self.replicas:
            self.history = self.history.record_scale_event(
                self.now, d.desired - self.replicas, keep_seconds(self.spec)[1]
            )
            self.log.append((self.now, self.replicas, d.desired))
            self.replicas = d.desired
        self.last = d
        return self.replicas


# --- the core formula -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("what", "current", "value", "target", "expected"),
    [
        # "if the current metric value is 200m, and the desired value is 100m, the number of
        # replicas will be doubled, since 200.0 / 100.0 == 2.0"
        ("doubled", 3, 0.2, 0.1, 6),
        # "If the current value is instead 50m, you'll halve the number of replicas"
        ("halved", 4, 0.05, 0.1, 2),
        # desiredReplicas = ceil[currentReplicas * ( currentMetricValue / desiredMetricValue )]
        ("rounded up", 3, 150, 100, 5),
        ("exact ratio not rounded up", 4, 150, 100, 6),
        # tolerance 0.1: "if the ratio is sufficiently close to 1.0 ... skip any scaling"
        ("within tolerance up", 10, 109, 100, 10),
        ("at the upper tolerance edge", 10, 110, 100, 10),
        ("just above the tolerance", 10, 111, 100, 12),
        ("within tolerance down", 10, 91, 100, 10),
        ("at the lower tolerance edge", 10, 90, 100, 10),
        ("just below the tolerance", 10, 89, 100, 9),
    ],
)
def test_ratio_and_tolerance(what: str, current: int, value: float, target: float, expected: int) -> None:
    spec = make(
        [value_metric(target=target)],
        behavior=no_windows(scaleDown={"policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}),
    )
    assert once(spec, current, {"m": value}).desired == expected, what


def test_utilization_is_a_ratio_of_the_target() -> None:
    spec = make(
        [
            {
                "name": "cpu",
                "type": "resource",
                "resource": {"name": "cpu"},
                "target": {"type": "Utilization", "value": 50},
            }
        ]
    )
    assert once(spec, 4, {"cpu": 100}).desired == 8


def test_average_value_of_an_external_total_is_divided_by_the_per_replica_target() -> None:
    # KEDA / HPA external metrics with AverageValue: desired = ceil(total / targetPerPod).
    spec = make([value_metric("rps", target=50, type_="AverageValue")], behavior={})
    d = once(spec, 2, {"rps": 420})
    assert (d.recommendation, d.desired) == (9, 6)  # the default scale-up rate: max(2*2, 2+4)
    assert d.metrics[0].ratio == pytest.approx(420 / 100)
    # ... and the tolerance still applies to the per-replica ratio: 2 replicas, 105 total.
    assert once(spec, 2, {"rps": 105}).desired == 2


def test_resource_average_value_reading_is_already_per_pod() -> None:
    spec = make(
        [
            {
                "name": "mem",
                "type": "resource",
                "resource": {"name": "memory"},
                "target": {"type": "AverageValue", "value": 100e6},
            }
        ]
    )
    assert once(spec, 3, {"mem": 200e6}).desired == 6


def test_configurable_tolerance_per_direction() -> None:
    spec = make(behavior={"scaleUp": {"tolerance": 0.05}})
    assert once(spec, 10, {"m": 106}).desired == 11
    assert once(spec, 10, {"m": 104}).desired == 10


# --- several metrics --------------------------------------------------------------------------
def test_the_max_over_metrics_wins_and_is_named() -> None:
    spec = make([value_metric("a"), value_metric("b", target=10, type_="AverageValue")], behavior={})
    d = once(spec, 2, {"a": 300, "b": 35})
    assert (d.desired, d.driver) == (6, "a")
    d = once(spec, 2, {"a": 100, "b": 55})
    assert (d.desired, d.driver) == (6, "b")


def test_a_failed_metric_blocks_scale_down_but_not_scale_up() -> None:
    # "If any of these metrics cannot be computed ... and the other metrics suggest a scale down,
    # scaling is skipped ... the HorizontalPodAutoscaler is still capable of scaling up".
    spec = make([value_metric("a"), value_metric("b")], behavior=no_windows())
    down = once(spec, 10, {"a": 10, "b": "connection refused"})
    assert down.desired == 10 and down.held_for_missing
    assert "scale-down skipped" in down.explanation
    up = once(spec, 10, {"a": 300, "b": "connection refused"})
    assert up.desired == 20


def test_all_metrics_failed_holds_the_count() -> None:
    spec = make(behavior=no_windows())
    d = once(spec, 7, {"m": "timeout after 3s"})
    assert d.desired == 7 and d.all_failed and d.reason == policy.ALL_METRICS_FAILED


def test_a_missing_reading_counts_as_failed() -> None:
    spec = make([value_metric("a"), value_metric("b")], behavior=no_windows())
    assert once(spec, 10, {"a": 10}).desired == 10


# --- behavior: policies -------------------------------------------------------------------------
def test_default_scale_up_doubles_or_adds_four_whichever_is_more_every_15s() -> None:
    spec = make(maxReplicas=1000, behavior={})  # `behavior: {}`: the documented default policies
    assert once(spec, 1, {"m": 100_000}).desired == 5
    assert once(spec, 10, {"m": 100_000}).desired == 20
    sim = Sim(spec, 1)
    assert [sim.step({"m": 100_000}, after=a) for a in (0, 5, 11, 15)] == [5, 5, 10, 20]


def test_scale_down_example_pods_4_and_percent_10_per_minute() -> None:
    # "if there are 80 replicas and the target has to be scaled down to 10 replicas then during
    # the first step 8 replicas will be reduced. In the next iteration when the number of
    # replicas is 72, 10% of the pods is 7.2 but the number is rounded up to 8 ... When the
    # number of replicas falls below 40 the first policy (Pods) is applied and 4 replicas will
    # be reduced at a time."
    behavior = no_windows(
        scaleDown={
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 60},
                {"type": "Percent", "value": 10, "periodSeconds": 60},
            ]
        }
    )
    spec = make([value_metric("total", target=10, type_="AverageValue")], behavior=behavior)
    sim = Sim(spec, 80)
    to_10 = {"total": 100}  # an external total of 100 at 10 per replica: 10 replicas
    assert sim.step(to_10) == 72
    assert sim.step(to_10, after=30) == 72  # the period still remembers the 8
    assert sim.step(to_10, after=31) == 64  # 72 * 10% = 7.2, rounded up to 8
    counts = [sim.step(to_10, after=61) for _ in range(12)]
    # 64 -> 57 (6.4 rounds up to 7), ... , below 40 the Pods policy (4 at a time) allows more.
    assert counts == [57, 51, 45, 40, 36, 32, 28, 24, 20, 16, 12, 10]


def test_select_policy_min_takes_the_smallest_change() -> None:
    behavior = no_windows(
        scaleDown={
            "selectPolicy": "Min",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 60},
                {"type": "Percent", "value": 10, "periodSeconds": 60},
            ],
        }
    )
    assert once(make(behavior=behavior), 80, {"m": 1}).desired == 76
    assert once(make(behavior=behavior), 20, {"m": 1}).desired == 18


def test_limit_scale_down_rate_to_5_pods_per_minute() -> None:
    behavior = no_windows(scaleDown={"policies": [{"type": "Pods", "value": 5, "periodSeconds": 60}]})
    sim = Sim(make(behavior=behavior), 20)
    assert sim.step({"m": 1}) == 15
    assert sim.step({"m": 1}, after=59) == 15
    assert sim.step({"m": 1}, after=2) == 10
    assert sim.last is not None and sim.last.reason == policy.SCALE_DOWN_LIMIT


def test_limit_scale_down_rate_to_10_percent_per_minute() -> None:
    behavior = no_windows(scaleDown={"policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]})
    assert once(make(behavior=behavior), 15, {"m": 1}).desired == 13  # 1.5 rounds up to 2


def test_disable_scale_down() -> None:
    behavior = no_windows(scaleDown={"selectPolicy": "Disabled"})
    d = once(make(behavior=behavior), 10, {"m": 1})
    assert d.desired == 10 and d.reason == policy.SCALE_DOWN_DISABLED and d.limited


def test_scale_up_900_percent() -> None:
    behavior = no_windows(scaleUp={"policies": [{"type": "Percent", "value": 900, "periodSeconds": 60}]})
    assert once(make(behavior=behavior), 1, {"m": 10_000}).desired == 10


def test_scale_up_rate_counts_scale_downs_in_the_period() -> None:
    # periodStart = current - added + removed: a recent scale-down widens the scale-up budget.
    behavior = no_windows(scaleUp={"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]})
    spec = make(behavior=behavior)
    history = History().record_scale_event(NOW - seconds(10), -3, 60)
    assert once(spec, 5, {"m": 10_000}, history).desired == 10


# --- behavior: stabilization ----------------------------------------------------------------------
def test_scale_down_uses_the_highest_recommendation_in_the_window() -> None:
    spec = make(behavior={"scaleDown": {"stabilizationWindowSeconds": 300}})
    sim = Sim(spec, 10)
    assert sim.step({"m": 100}) == 10
    assert sim.step({"m": 80}, after=60) == 10  # wants 8, the window remembers 10
    assert sim.step({"m": 50}, after=60) == 10
    assert sim.last is not None and sim.last.stabilized_by_window
    assert "stabilization window" in sim.last.explanation
    assert sim.step({"m": 50}, after=190) == 8  # the 10 has left the window; 8 is still in it
    assert sim.step({"m": 50}, after=60) == 5


def test_a_fresh_controller_waits_for_the_scale_down_window() -> None:
    spec = make(behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    sim = Sim(spec, 10)
    assert sim.step({"m": 10}) == 10
    assert sim.step({"m": 10}, after=61) == 1


def test_scale_up_stabilization_uses_the_lowest_recommendation() -> None:
    spec = make(behavior={"scaleUp": {"stabilizationWindowSeconds": 60}})
    sim = Sim(spec, 2)
    assert sim.step({"m": 100}) == 2
    assert sim.step({"m": 300}, after=30) == 2
    assert sim.step({"m": 300}, after=31) == 6


# --- no behavior: the HPA controller's legacy rule -------------------------------------------------
# kubernetes/kubernetes pkg/controller/podautoscaler/horizontal.go: an HPA whose spec has no
# `behavior` is normalized by normalizeDesiredReplicas, not by the documented default policies
# (the API server fills those in only when `behavior` is present, pkg/apis/autoscaling/v2/defaults.go).
def history_of(*samples: tuple[int, float]) -> History:
    """Recommendations (replicas, seconds before NOW), oldest first, as the windows remember them."""
    history = History()
    for replicas, ago in samples:
        history = history.record_recommendation(NOW - seconds(ago), replicas, 3600)
    return history


OLD = history_of((1, 900))  # a history with nothing left in any window


@pytest.mark.parametrize(
    ("what", "current", "value", "min_", "max_", "expected", "reason"),
    [
        # horizontal_test.go TestConvertDesiredReplicasWithRules, case by case:
        ("prenormalized desired replicas within range", 5, 140, 3, 8, 7, policy.WITHIN_RANGE),
        ("prenormalized desired replicas < minReplicas", 3, 100 / 3, 2, 8, 2, policy.TOO_FEW_REPLICAS),
        ("prenormalized desired zeroed replicas within range", 1, 0, 0, 10, 0, policy.WITHIN_RANGE),
        (
            "maxReplicas is the limit because maxReplicas < scaleUpLimit",
            20,
            5000,
            1,
            10,
            10,
            policy.TOO_MANY_REPLICAS,
        ),
        (
            "scaleUpLimit is the limit because scaleUpLimit < maxReplicas",
            3,
            33_333,
            1,
            2000,
            6,
            policy.SCALE_UP_LIMIT,
        ),
        # calculateScaleUpLimit: max(2 x current, 4), so small counts may grow to 4 at once.
        ("one replica may become four", 1, 1000, 1, 100, 4, policy.SCALE_UP_LIMIT),
        ("a scale-down is not rate-limited", 40, 5, 1, 100, 2, policy.WITHIN_RANGE),
    ],
)
def test_without_behavior_the_controllers_legacy_limits_apply(
    what: str, current: int, value: float, min_: int, max_: int, expected: int, reason: str
) -> None:
    spec = make(minReplicas=min_, maxReplicas=max_, cooldownPeriod=0)
    assert spec.behavior.legacy
    d = once(spec, current, {"m": value}, OLD)
    assert (d.desired, d.reason) == (expected, reason), what


@pytest.mark.parametrize(
    ("what", "samples", "recommendation", "expected"),
    [
        # horizontal_test.go TestNormalizeDesiredReplicas (a 5-minute window):
        ("stabilize", [(4, 120), (5, 60)], 3, 5),
        ("no stabilize", [(1, 120), (2, 60)], 3, 3),
        ("no stabilize - old recommendations", [(10, 600), (9, 540)], 3, 3),
        ("stabilize - old recommendations", [(10, 600), (9, 540), (5, 120), (4, 60)], 3, 5),
        # stabilizeRecommendation drops only samples Before the cutoff: one exactly 300 s old counts.
        ("a sample exactly 300 s old is in the window", [(9, 300)], 3, 9),
        ("a sample 301 s old is not", [(9, 301)], 3, 3),
    ],
)
def test_without_behavior_the_scale_down_window_is_the_controllers(
    what: str, samples: list[tuple[int, float]], recommendation: int, expected: int
) -> None:
    spec = make(maxReplicas=20)
    d = once(spec, 9, {"m": recommendation * 100 / 9}, history_of(*samples))
    assert d.recommendation == recommendation
    assert d.desired == expected, what
    assert d.stabilized_by_window == (expected != recommendation)


def test_with_behavior_the_window_excludes_a_sample_exactly_its_length_old() -> None:
    # stabilizeRecommendationWithBehaviors counts samples After the cutoff only.
    spec = make(maxReplicas=20, behavior={})
    assert once(spec, 9, {"m": 100 / 3}, history_of((9, 300))).desired == 3


def test_without_behavior_a_higher_recommendation_in_the_window_is_followed_up() -> None:
    # The legacy window is the max of recent recommendations, not a band around the current
    # count: a recommendation of 8 a minute ago, limited then, still pulls a scale-up to 8.
    history = history_of((8, 60))
    legacy = once(make(), 3, {"m": 500 / 3}, history)
    assert (legacy.recommendation, legacy.stabilized, legacy.desired) == (5, 8, 6)
    assert legacy.reason == policy.SCALE_UP_LIMIT
    assert "limited by the scale-up limit without behavior: max(2 x 3, 4) = 6" in legacy.explanation
    with_behavior = once(make(behavior={}), 3, {"m": 500 / 3}, history)
    assert with_behavior.desired == 5


def test_without_behavior_each_round_may_double_with_no_period_to_remember() -> None:
    legacy = Sim(make(maxReplicas=1000), 1)
    assert [legacy.step({"m": 100_000}, after=a) for a in (0, 5, 11, 15)] == [4, 8, 16, 32]
    defaults = Sim(make(maxReplicas=1000, behavior={}), 1)  # `behavior: {}` is not "no behavior"
    assert [defaults.step({"m": 100_000}, after=a) for a in (0, 5, 11, 15)] == [5, 5, 10, 20]
    assert not defaults.spec.behavior.legacy


def test_without_behavior_the_status_names_the_legacy_limit() -> None:
    from kopfscale.scaledapp import status as st

    spec = make(maxReplicas=100)
    d = once(spec, 3, {"m": 1000}, OLD)
    limited = next(c for c in st.decision_conditions(d, spec, 1, NOW) if c["type"] == "ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("True", policy.SCALE_UP_LIMIT)
    assert limited["message"] == (
        "the desired count is increasing faster than the maximum scale rate "
        "(no behavior: at most max(2 x current, 4) per round) (30 -> 6)"
    )


# --- bounds -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "value", "expected", "reason"),
    [
        (5, 10_000, 10, policy.TOO_MANY_REPLICAS),
        (12, 100, 10, policy.TOO_MANY_REPLICAS),  # current above max: max, no behaviour applies
        (3, 1, 2, policy.TOO_FEW_REPLICAS),
        (1, 1, 2, policy.TOO_FEW_REPLICAS),  # current below min: min
    ],
)
def test_bounds(current: int, value: float, expected: int, reason: str) -> None:
    spec = make(
        minReplicas=2,
        maxReplicas=10,
        behavior=no_windows(scaleUp={"policies": [{"type": "Percent", "value": 1000, "periodSeconds": 15}]}),
    )
    d = once(spec, current, {"m": value})
    assert (d.desired, d.reason, d.limited) == (expected, reason, True)


# --- pause, fallback ---------------------------------------------------------------------------------
def test_paused_holds_the_count_but_still_reports() -> None:
    spec = make(paused=True)
    d = once(spec, 3, {"m": 1000})
    assert d.desired == 3 and d.reason == policy.PAUSED
    assert d.metrics[0].recommendation == 30
    assert "paused" in d.explanation


def test_fallback_after_the_failure_threshold_and_recovery() -> None:
    spec = make(behavior=no_windows(), fallback={"failureThreshold": 3, "replicas": 4})
    sim = Sim(spec, 2)
    for _ in range(3):  # failures 1..3: not yet more than the threshold; the count is held
        assert sim.step({"m": "HTTP 503"}, after=15) == 2
        assert sim.last is not None and not sim.last.fallback
    assert sim.step({"m": "HTTP 503"}, after=15) == 4  # the 4th failure in a row exceeds 3
    assert sim.last.fallback and sim.last.metrics[0].failures == 4
    assert sim.step({"m": "HTTP 503"}, after=15) == 4
    assert sim.last.metrics[0].failures == 4  # capped one above the threshold
    assert sim.step({"m": 100}, after=15) == 4  # the source is back: the metric decides again
    assert not sim.last.fallback and sim.last.history.failures == {}
    assert sim.step({"m": 50}, after=15) == 2


@pytest.mark.parametrize(
    ("threshold", "previous", "fallback"),
    [
        # kedacore/keda pkg/fallback/fallback_test.go: "should bump the number of failures when
        # metrics call fails" (0 failures before, threshold 3: the error, no fallback) ...
        (3, 0, False),
        (3, 2, False),  # the 3rd failure equals the threshold: still no fallback
        # ... "should return a normalised metric when number of failures are beyond threshold"
        # (3 failures before, threshold 3: the 4th failure falls back).
        (3, 3, True),
        (1, 0, False),  # failureThreshold 1: the first failure is held, the second falls back
        (1, 1, True),
    ],
)
def test_fallback_waits_until_the_failures_exceed_the_threshold(
    threshold: int, previous: int, fallback: bool
) -> None:
    spec = make(behavior=no_windows(), fallback={"failureThreshold": threshold, "replicas": 5})
    history = History().with_failures({"m": previous})
    d = once(spec, 2, {"m": "HTTP 503"}, history)
    assert (d.fallback, d.desired) == (fallback, 5 if fallback else 2)
    assert d.metrics[0].failures == previous + 1


def test_fallback_can_scale_down_like_keda() -> None:
    spec = make(behavior=no_windows(), fallback={"failureThreshold": 1, "replicas": 3})
    assert once(spec, 8, {"m": "boom"}, History().with_failures({"m": 1})).desired == 3


# --- scale to zero and back, in one loop --------------------------------------------------------
def zero_spec(**extra: Any) -> ScaledAppSpec:
    metrics = [value_metric("q", target=10, type_="AverageValue", activationThreshold=5)]
    spec: dict[str, Any] = {
        "minReplicas": 0,
        "maxReplicas": 10,
        "cooldownPeriod": 120,
        "behavior": no_windows(),
    }
    spec.update(extra)
    return make(metrics, **spec)


def test_activation_threshold_decides_zero_to_one() -> None:
    spec = zero_spec()
    assert once(spec, 0, {"q": 5}).desired == 0  # not strictly greater than the threshold
    d = once(spec, 0, {"q": 6})
    assert d.desired == 1 and d.active
    assert once(spec, 0, {"q": 35}).desired == 4  # 0 -> 1 is free; beyond it the rate applies


def test_activation_from_zero_for_ratio_metrics_goes_to_one() -> None:
    spec = make([value_metric(activationThreshold=0)], minReplicas=0, behavior=no_windows())
    assert once(spec, 0, {"m": 300}).desired == 1


def test_inactive_scales_to_zero_after_the_cooldown_only() -> None:
    spec = zero_spec()
    sim = Sim(spec, 3)
    assert sim.step({"q": 2}) == 1  # inactive: down to 1 at once, zero waits for the cooldown
    assert sim.last is not None and sim.last.reason == policy.COOLDOWN
    assert "cooldown" in sim.last.explanation
    assert sim.step({"q": 2}, after=60) == 1
    assert sim.step({"q": 9}, after=30) == 1  # active again: the inactivity clock restarts
    assert sim.step({"q": 2}, after=30) == 1
    assert sim.step({"q": 2}, after=119) == 1
    assert sim.step({"q": 2}, after=1) == 0
    assert sim.step({"q": 2}, after=30) == 0
    assert sim.step({"q": 7}, after=30) == 1


def test_scale_down_policies_hold_all_the_way_to_zero() -> None:
    spec = zero_spec(
        cooldownPeriod=0,
        behavior=no_windows(scaleDown={"policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}),
    )
    sim = Sim(spec, 4)
    counts = [sim.step({"q": 0}, after=61) for _ in range(4)]
    assert counts == [2, 1, 0, 0]


def test_the_scale_down_window_holds_before_zero_too() -> None:
    spec = zero_spec(cooldownPeriod=0, behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    sim = Sim(spec, 1)
    assert sim.step({"q": 50}) == 5
    assert sim.step({"q": 0}, after=30) == 5
    assert sim.step({"q": 0}, after=31) == 0


def test_initial_cooldown_keeps_a_new_object_off_zero() -> None:
    spec = zero_spec(cooldownPeriod=0, initialCooldownPeriod=600)
    sim = Sim(spec, 1)
    assert sim.step({"q": 0}) == 1
    assert sim.last is not None and sim.last.reason == policy.INITIAL_COOLDOWN
    assert sim.step({"q": 0}, after=599) == 1
    assert sim.step({"q": 0}, after=1) == 0


def test_no_scale_to_zero_while_a_metric_fails() -> None:
    spec = make(
        [value_metric("q", target=10, type_="AverageValue"), value_metric("b")],
        minReplicas=0,
        cooldownPeriod=0,
        behavior=no_windows(),
    )
    d = once(spec, 2, {"q": 0, "b": "timeout"})
    assert d.desired == 2 and d.active is None


def test_at_zero_a_failing_metric_keeps_zero() -> None:
    assert once(zero_spec(), 0, {"q": "timeout"}).desired == 0


def test_activation_is_ignored_when_min_is_at_least_one() -> None:
    spec = zero_spec(minReplicas=1)
    assert once(spec, 3, {"q": 0}).desired == 1


def test_cron_is_a_floor() -> None:
    metrics = [
        value_metric("q", target=10, type_="AverageValue"),
        {
            "name": "hours",
            "type": "cron",
            "cron": {"timezone": "UTC", "start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": 3},
        },
    ]
    spec = make(metrics, minReplicas=0, cooldownPeriod=0, behavior=no_windows())
    d = once(spec, 1, {"q": 5, "hours": 3})
    assert (d.desired, d.driver) == (3, "hours")
    assert once(spec, 3, {"q": 55, "hours": 3}).desired == 6
    assert once(spec, 3, {"q": 0, "hours": 0}).desired == 0
    assert once(spec, 0, {"q": 0, "hours": 3}).desired == 3


def test_explanation_names_values_ratios_and_the_change() -> None:
    spec = make(
        [
            value_metric("rps", target=50, type_="AverageValue"),
            {
                "name": "cpu",
                "type": "resource",
                "resource": {"name": "cpu"},
                "target": {"type": "Utilization", "value": 70},
            },
        ],
        behavior={},
    )
    d = once(spec, 2, {"rps": 400, "cpu": 35})
    assert d.explanation.startswith("rps: 400 (target AverageValue 50, ratio 4.00) -> 8; cpu: 35%")
    assert "max 8 (rps)" in d.explanation
    assert d.explanation.endswith("2 -> 6")
    assert d.reason == policy.SCALE_UP_LIMIT


def test_a_ratio_beyond_any_float_is_reported_never_raised() -> None:
    spec = make([value_metric(target=1e-320)], behavior=no_windows())
    d = once(spec, 3, {"m": 5.0})
    assert d.desired == 3 and d.all_failed  # held, like a failed read
    (m,) = d.metrics
    assert m.error is not None and "not a finite ratio" in m.error
    huge = once(make([value_metric(target=1e-290)], behavior=no_windows()), 3, {"m": 1e10})
    assert huge.metrics[0].recommendation == policy.MAX_PROPOSAL  # an int32, whatever the ratio
    assert (huge.desired, huge.reason) == (7, policy.SCALE_UP_LIMIT)  # then the policies apply as usual
    assert "ratio 1.000e+300" in huge.explanation
