"""The policy against the HPA controller's own test cases, where they show a rule its
documentation does not: kubernetes/kubernetes pkg/controller/podautoscaler/replica_calculator.go
and replica_calculator_test.go (v1.36). Targets and values are the tests' milli-values / 1000.
"""

from __future__ import annotations

import pytest

from kopfscale.scaledapp.policy import Pods, decide, evaluate_metric, needs_ready_pods
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
