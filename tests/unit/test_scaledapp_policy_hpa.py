"""The policy against the HPA controller's own test cases, where they show a rule its
documentation does not: kubernetes/kubernetes pkg/controller/podautoscaler/replica_calculator.go
and replica_calculator_test.go (v1.36). Targets and values are the tests' milli-values / 1000.
"""

from __future__ import annotations

import pytest

from kopfscale.scaledapp.policy import Decision, Pods, decide, evaluate_metric, needs_ready_pods
from kopfscale.scaledapp.sources import MetricReading, PodGroup, PodSample
from kopfscale.scaledapp.spec import ScaledAppSpec

from .test_scaledapp_policy import NOW, OLD, R, make, value_metric


def total(type_: str, target: float) -> ScaledAppSpec:
    """An http metric (a total, like the HPA's External and Object metrics) without windows."""
    return make(
        [value_metric("qps", target=target, type_=type_)],
        maxReplicas=1000,
        behavior={
            "scaleUp": {"policies": [{"type": "Percent", "value": 1000, "periodSeconds": 15}]},
            "scaleDown": {"stabilizationWindowSeconds": 0},
        },
    )


def proposal(spec: ScaledAppSpec, current: int, value: float, pods: Pods) -> int | None:
    return evaluate_metric(spec.metrics[0], R("qps", value=value), current, spec, 0, pods).recommendation


# --- Value: the ratio multiplies the ready Pods (getUsageRatioReplicaCount) ---------------------
@pytest.mark.parametrize(
    ("test", "current", "ready", "value", "target", "expected"),
    [
        ("TestReplicaCalcScaleUpCMObject", 3, 3, 20.0, 15.0, 4),
        # "If we did not ignore unready pods, we'd expect 15 replicas": 1 of 3 Pods is ready.
        ("TestReplicaCalcScaleUpCMObjectIgnoresUnreadyPods", 3, 1, 50.0, 10.0, 5),
        ("TestReplicaCalcScaleDownCMObject", 5, 5, 12.0, 20.0, 3),
        ("TestReplicaCalcToleranceCMObject", 3, 3, 20.666, 20.0, 3),
        # "Would expect 6 if we didn't ignore unready pods": ceil(8.6 / 4.4 x 1 ready Pod) = 2.
        ("TestReplicaCalcScaleUpCMExternalIgnoresUnreadyPods", 3, 1, 8.6, 4.4, 2),
        ("TestReplicaCalcScaleDownCMExternal", 5, 5, 8.6, 14.334, 3),
        ("TestReplicaCalcToleranceCMExternal", 3, 3, 8.6, 8.888, 3),
    ],
)
def test_a_value_total_multiplies_the_ready_pods(
    test: str, current: int, ready: int, value: float, target: float, expected: int
) -> None:
    spec = total("Value", target)
    assert proposal(spec, current, value, Pods(replicas=current, ready=ready)) == expected, test


def test_a_value_total_with_pods_not_ready_is_explained() -> None:
    spec = total("Value", 10)
    d = decide(spec, 3, [R("qps", value=50)], OLD, now=NOW, pods=Pods(replicas=3, ready=1))
    assert d.desired == 5  # spec.replicas x ratio would be 15
    assert d.explanation.startswith("qps: 50 (target Value 10, ratio 5.00 x 1 ready Pod) -> 5")
    assert d.metrics[0].pods == 1


def test_a_value_total_with_no_ready_pod_proposes_zero_like_the_hpa() -> None:
    # ceil(ratio x 0): every Pod unready (e.g. all restarting) proposes 0, then minReplicas.
    spec = total("Value", 10)
    d = decide(spec, 4, [R("qps", value=50)], OLD, now=NOW, pods=Pods(replicas=4, ready=0))
    assert (d.metrics[0].recommendation, d.desired) == (0, 1)


def test_a_value_total_inside_the_tolerance_needs_no_pod_count() -> None:
    spec = total("Value", 10)
    inside = [R("qps", value=10.5)]
    assert not needs_ready_pods(spec, 3, inside)
    d = decide(spec, 3, inside, OLD, now=NOW, pods=Pods(replicas=3, error="not counted"))
    assert d.desired == 3 and d.metrics[0].error is None and d.metrics[0].pods is None
    assert needs_ready_pods(spec, 3, [R("qps", value=20)])
    assert not needs_ready_pods(spec, 0, [R("qps", value=20)])  # at zero, activation decides
    assert not needs_ready_pods(spec, 3, [R("qps", error="timeout")])
    assert not needs_ready_pods(total("AverageValue", 10), 3, [R("qps", value=90)])


def test_a_value_total_fails_when_the_ready_pods_cannot_be_counted() -> None:
    # getReadyPodsCount's "no pods returned by selector": the metric is invalid, as in the HPA,
    # and like any failed metric it blocks a scale-down but not a scale-up of the others.
    spec = total("Value", 10)
    d = decide(
        spec, 3, [R("qps", value=50)], OLD, now=NOW, pods=Pods(replicas=0, error="Deployment/web has no Pods")
    )
    assert d.desired == 3 and d.all_failed
    assert (
        d.metrics[0].error == "50 read, but the ready Pods could not be counted: Deployment/web has no Pods"
    )


# --- AverageValue: the tolerance per Pod the workload has (GetExternalPerPodMetricReplicas) -----
@pytest.mark.parametrize(
    ("test", "status_replicas", "value", "target", "expected"),
    [
        ("TestReplicaCalcScaleUpPerPodCMExternal", 3, 8.6, 2.15, 4),
        ("TestReplicaCalcScaleDownPerPodCMExternal", 5, 8.6, 2.867, 3),
        ("TestReplicaCalcTolerancePerPodCMExternal", 3, 8.6, 2.9, 3),
        ("TestReplicaCalcScaleUpCMPerPodObject", 3, 20.0, 5.0, 4),
        ("TestReplicaCalcScaleDownPerPodCMObject", 5, 6.0, 2.0, 3),
        ("TestReplicaCalcTolerancePerPodCMObject", 4, 20.166, 5.0, 4),
    ],
)
def test_an_average_value_total_is_judged_per_pod_the_workload_has(
    test: str, status_replicas: int, value: float, target: float, expected: int
) -> None:
    spec = total("AverageValue", target)
    assert proposal(spec, status_replicas, value, Pods(replicas=status_replicas)) == expected, test


@pytest.mark.parametrize(
    ("what", "status_replicas", "value", "expected", "by_spec_replicas"),
    [
        # A rollout with maxSurge: spec.replicas 4, status.replicas 5. 42 is 0.84 of 5 Pods x 10,
        # outside the tolerance: ceil(42 / 10) = 5 (against 4 replicas it is 1.05, within: 4).
        ("surge, outside the tolerance of the Pods it has", 5, 42, 5, 4),
        # 50 is exactly 5 Pods x 10: within the tolerance, the HPA proposes those 5 Pods.
        ("surge, at target for the Pods it has", 5, 50, 5, 5),
        # One Pod not created yet (status.replicas 3 of 4): 31 is within the tolerance of 3 x 10,
        # so the proposal is the 3 Pods it has (against 4 replicas: 0.78, ceil(3.1) = 4).
        ("a Pod missing, within the tolerance of the Pods it has", 3, 31, 3, 4),
    ],
)
def test_an_average_value_total_during_a_rollout_follows_status_replicas(
    what: str, status_replicas: int, value: float, expected: int, by_spec_replicas: int
) -> None:
    spec = total("AverageValue", 10)
    assert proposal(spec, 4, value, Pods(replicas=status_replicas)) == expected, what
    assert proposal(spec, 4, value, Pods(replicas=4)) == by_spec_replicas, what


def test_an_average_value_total_names_the_pods_it_was_judged_over() -> None:
    spec = total("AverageValue", 10)
    d = decide(spec, 4, [R("qps", value=50)], OLD, now=NOW, pods=Pods(replicas=5))
    assert (d.metrics[0].ratio, d.metrics[0].pods, d.desired) == (1.0, 5, 5)
    assert d.explanation.startswith(
        "qps: 50 (target AverageValue 10, ratio 1.00 over 5 Pods) within tolerance -> 5"
    )


def test_an_average_value_total_of_a_workload_without_pods_uses_the_total_alone() -> None:
    spec = total("AverageValue", 10)
    m = evaluate_metric(spec.metrics[0], R("qps", value=35), 3, spec, 0, Pods(replicas=0))
    assert (m.recommendation, m.ratio, m.pods) == (4, None, None)


# --- resource: Pods not ready and Pods without metrics (GetResourceReplicas) ----------------------
def cpu(current: int, target: float, ready: list[tuple[int, int]], **set_aside: list[int]) -> Decision:
    """A cpu Utilization reading from its Pods: ``ready`` as (usage, request) per Pod in
    milli-cores; ``unready`` / ``missing``: the requests of the Pods set aside."""
    sample = PodSample(
        utilization=True,
        ready=PodGroup(tuple(u for u, _ in ready), tuple(r for _, r in ready)),
        unready=PodGroup((0,) * len(set_aside.get("unready", [])), tuple(set_aside.get("unready", []))),
        missing=PodGroup((0,) * len(set_aside.get("missing", [])), tuple(set_aside.get("missing", []))),
        ignored=set_aside.get("ignored", [0])[0],
    )
    spec = resource_spec("Utilization", target)
    reading = MetricReading("cpu", sample.value, pods=sample)
    return decide(spec, current, [reading], OLD, now=NOW)


def resource_spec(target_type: str, target: float) -> ScaledAppSpec:
    return make(
        [
            {
                "name": "cpu",
                "type": "resource",
                "resource": {"name": "cpu" if target_type == "Utilization" else "memory"},
                "target": {"type": target_type, "value": target},
            }
        ],
        maxReplicas=1000,
        behavior={
            "scaleUp": {"policies": [{"type": "Percent", "value": 1000, "periodSeconds": 15}]},
            "scaleDown": {"stabilizationWindowSeconds": 0},
        },
    )


# Each test Pod of replica_calculator_test.go has two containers with the same request and usage
# (numContainersPerPod = 2): a Pod here is twice one of its levels and requests.
def pods_of(*levels: int, request: int = 1000) -> list[tuple[int, int]]:
    return [(2 * level, 2 * request) for level in levels]


@pytest.mark.parametrize(
    ("test", "current", "target", "ready", "set_aside", "value", "expected"),
    [
        ("TestReplicaCalcScaleUp", 3, 30, pods_of(300, 500, 700), {}, 50, 5),
        # The unready (or still starting: "HotCpu") Pod counts at 0 % on a scale-up: 4, not 6.
        ("TestReplicaCalcScaleUpUnreadyLessScale", 3, 30, pods_of(500, 700), {"unready": [2000]}, 60, 4),
        ("TestReplicaCalcScaleUpHotCpuLessScale", 3, 30, pods_of(500, 700), {"unready": [2000]}, 60, 4),
        # ... and when that turns the scale-up into a scale-down, nothing changes.
        ("TestReplicaCalcScaleUpUnreadyNoScale", 3, 30, pods_of(400), {"unready": [2000, 2000]}, 40, 3),
        ("TestReplicaCalcScaleHotCpuNoScale", 3, 30, pods_of(400), {"unready": [2000, 2000]}, 40, 3),
        ("TestReplicaCalcScaleUpIgnoresFailedPods", 2, 30, pods_of(500, 700), {"ignored": [2]}, 60, 4),
        ("TestReplicaCalcScaleDown", 5, 50, pods_of(100, 300, 500, 250, 250), {}, 28, 3),
        # Unready Pods are left out of a scale-down: ceil(0.6 x 3 ready Pods) = 2.
        (
            "TestReplicaCalcScaleDownExcludeUnreadyPods",
            5,
            50,
            pods_of(100, 300, 500),
            {"unready": [2000] * 2},
            30,
            2,
        ),
        (
            "TestReplicaCalcScaleDownExcludeUnscheduledPods",
            5,
            50,
            pods_of(100),
            {"unready": [2000] * 4},
            10,
            1,
        ),
        (
            "TestReplicaCalcScaleDownIgnoreHotCpuPods",
            5,
            50,
            pods_of(100, 300, 500),
            {"unready": [2000] * 2},
            30,
            2,
        ),
        ("TestReplicaCalcTolerance", 3, 100, [(2020, 1800), (2060, 2000), (2040, 2200)], {}, 102, 3),
        ("TestReplicaCalcSuperfluousMetrics", 4, 100, pods_of(4000, 9500, 3000, 7000), {}, 587, 24),
        # Pods without metrics count at 100 % of their request on a scale-down ...
        ("TestReplicaCalcMissingMetrics", 4, 100, pods_of(400, 95), {"missing": [2000, 2000]}, 24, 3),
        ("TestReplicaCalcMissingMetricsNoChangeEq", 2, 100, pods_of(1000), {"missing": [2000]}, 100, 2),
        # ... at 0 % on a scale-up, here landing within the tolerance: no change.
        ("TestReplicaCalcMissingMetricsNoChangeGt", 2, 100, pods_of(1900), {"missing": [2000]}, 190, 2),
        ("TestReplicaCalcMissingMetricsNoChangeLt", 2, 100, pods_of(600), {"missing": [2000]}, 60, 2),
        # 45 % of 50: a scale-down; the Pod without metrics at 100 % makes it 72 %: a scale-up. No change.
        (
            "TestReplicaCalcMissingMetricsUnreadyChange",
            3,
            50,
            pods_of(450),
            {"unready": [2000], "missing": [2000]},
            45,
            3,
        ),
        (
            "TestReplicaCalcMissingMetricsHotCpuNoChange",
            3,
            50,
            pods_of(450),
            {"unready": [2000], "missing": [2000]},
            45,
            3,
        ),
        (
            "TestReplicaCalcMissingMetricsUnreadyScaleUp",
            3,
            50,
            pods_of(2000),
            {"unready": [2000], "missing": [2000]},
            200,
            4,
        ),
        (
            "TestReplicaCalcMissingMetricsHotCpuScaleUp",
            3,
            50,
            pods_of(2000),
            {"unready": [2000], "missing": [2000]},
            200,
            4,
        ),
        (
            "TestReplicaCalcMissingMetricsUnreadyScaleDown",
            4,
            50,
            pods_of(100, 100),
            {"unready": [2000], "missing": [2000]},
            10,
            3,
        ),
        # A target above 100 %: a Pod without metrics counts at the target on a scale-down.
        (
            "TestReplicaCalcMissingMetricsScaleDownTargetOver100",
            4,
            300,
            [(200, 2000), (200, 4000)],
            {"unready": [2000], "missing": [4000]},
            6,
            2,
        ),
        # A surge Pod without metrics yet: 3 Pods for 2 replicas would ask for 3, the other way.
        (
            "TestReplicaCalcDuringRollingUpdateWithMaxSurge",
            2,
            50,
            pods_of(100, 100),
            {"missing": [2000]},
            10,
            2,
        ),
        # TestReplicaCalcComputedToleranceAlgImplementation: 50 % against 56 % is outside the
        # tolerance (0.89: 10 -> 9), against 55 % inside it (0.91).
        ("TestReplicaCalcComputedToleranceAlgImplementation (scale)", 10, 56, [(300, 600)] * 10, {}, 50, 9),
        ("TestReplicaCalcComputedToleranceAlgImplementation (hold)", 10, 55, [(300, 600)] * 10, {}, 50, 10),
    ],
)
def test_resource_metrics_count_pods_set_aside_as_the_hpa(
    test: str,
    current: int,
    target: float,
    ready: list[tuple[int, int]],
    set_aside: dict[str, list[int]],
    value: float,
    expected: int,
) -> None:
    d = cpu(current, target, ready, **set_aside)
    assert d.metrics[0].value == value, test  # the utilization the HPA reports: whole percent
    assert d.metrics[0].recommendation == expected, test


@pytest.mark.parametrize(
    ("test", "current", "target", "ready", "missing", "expected"),
    [
        # calcPlainMetricReplicas, the same rules for an AverageValue target (milli-units).
        ("TestReplicaCalcScaleUpCM", 3, 15.0, [20000, 10000, 30000], 0, 4),
        ("TestReplicaCalcScaleDownCM", 5, 20.0, [12000] * 5, 0, 3),
        ("TestReplicaCalcToleranceCM", 3, 20.0, [20000, 21000, 21000], 0, 3),
        ("TestPlainMetricReplicaCalcMissingMetricsNoChangeEq", 5, 20.0, [20000, 19000, 21000], 2, 5),
        # A Pod without metrics counts at exactly the target on a scale-down: 3 Pods would ask
        # for ceil(0.73 x 3) = 3 of 2 replicas, the other way: no change.
        ("TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM", 2, 17.0, [10000, 10000], 1, 2),
    ],
)
def test_resource_average_value_counts_pods_without_metrics_at_the_target(
    test: str, current: int, target: float, ready: list[int], missing: int, expected: int
) -> None:
    sample = PodSample(
        utilization=False,
        ready=PodGroup(tuple(ready), (0,) * len(ready)),
        missing=PodGroup((0,) * missing, (0,) * missing),
    )
    spec = resource_spec("AverageValue", target)
    d = decide(spec, current, [MetricReading("cpu", sample.value, pods=sample)], OLD, now=NOW)
    assert d.metrics[0].recommendation == expected, test


def test_how_the_pods_counted_is_explained_and_recorded() -> None:
    from kopfscale.scaledapp import decision_record, status

    # TestReplicaCalcMissingMetricsUnreadyScaleUp: 200 % of 50 over 1 ready Pod; one Pod not ready
    # and one without metrics counted at 0 %: 66 %, ratio 1.32 over 3 Pods -> 4.
    d = cpu(3, 50, pods_of(2000), unready=[2000], missing=[2000])
    assert d.desired == 4
    assert d.explanation.startswith(
        "cpu: 200% (target Utilization 50%, ratio 4.00 over 1 ready Pod; 1 Pod without metrics at 0%, "
        "1 Pod not ready at 0% (scale-up): ratio 1.32 over 3 Pods) -> 4"
    )
    (metric,) = status.decision_status(d)["metrics"]
    assert (metric["pods"], metric["adjustedRatio"], metric["proposal"]) == (3, 1.32, 4)
    assert status.metric_status(d.metrics[0])["adjustedRatio"] == 1.32
    assert decision_record.constraints(d) == ()
    # The direction flips: no change, and the explanation says why.
    held = cpu(3, 50, pods_of(450), unready=[2000], missing=[2000])
    assert held.desired == 3
    assert "(scale-down): ratio 1.44 over 2 Pods, the other way: no change) -> 3" in held.explanation
    # Left out of a scale-down, the unready Pods are still named.
    down = cpu(5, 50, pods_of(100, 300, 500), unready=[2000, 2000])
    assert "cpu: 30% (target Utilization 50%, ratio 0.60 over 3 ready Pods, 2 not ready left out) -> 2" in (
        down.explanation
    )


def test_without_its_pods_a_resource_reading_multiplies_current() -> None:
    # What `kopfscale simulate` has: a value from a trace, no Pods. Every replica counts.
    spec = resource_spec("Utilization", 50)
    d = decide(spec, 4, [MetricReading("cpu", 75.0)], OLD, now=NOW)
    assert (d.metrics[0].recommendation, d.metrics[0].pods) == (6, 4)
