"""PodMetrics + Pods → the HPA's resource metric value and its Pods grouped as the HPA groups
them (pure), and Kubernetes quantities."""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import pytest

from kopfscale.scaledapp.sources.base import PodGroup, PodSample, SourceError
from kopfscale.scaledapp.sources.resource import (
    compute_value,
    go_duration,
    group_pods,
    parse_config,
    parse_quantity,
)

NOW = datetime.datetime(2024, 3, 4, 12, 0, tzinfo=datetime.UTC)


def at(seconds_ago: float) -> str:
    return (NOW - datetime.timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def pod_metrics(
    name: str, *usages: dict[str, str], sampled: float = 0, window: str = "15s"
) -> dict[str, Any]:
    return {
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "timestamp": at(sampled),
        "window": window,
        "containers": [{"name": f"c{i}", "usage": usage} for i, usage in enumerate(usages)],
    }


def pod(
    name: str,
    *requests: dict[str, str] | None,
    phase: str = "Running",
    deleting: bool = False,
    sidecars: list[dict[str, Any]] | None = None,
    ready: str | None = "True",
    started: float | None = 3600,  # seconds ago; None: no start time
    transition: float | None = 3590,  # seconds ago the Ready condition last changed
    pod_level: dict[str, str] | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "default", "labels": {"app": "web"}}
    if deleting:
        metadata["deletionTimestamp"] = "2024-03-04T11:59:00Z"
    containers = [
        {"name": f"c{i}", "image": "web", "resources": {} if req is None else {"requests": req}}
        for i, req in enumerate(requests)
    ]
    spec: dict[str, Any] = {"containers": containers}
    if sidecars is not None:
        spec["initContainers"] = sidecars
    if pod_level is not None:
        spec["resources"] = {"requests": pod_level}
    status: dict[str, Any] = {"phase": phase}
    if started is not None:
        status["startTime"] = at(started)
    if ready is not None:
        condition = {"type": "Ready", "status": ready}
        if transition is not None:
            condition["lastTransitionTime"] = at(transition)
        status["conditions"] = [condition]
    return {"metadata": metadata, "spec": spec, "status": status}


def value(resource: str, target: str, metrics: list[Any], pods: list[Any]) -> float:
    return compute_value(resource, target, metrics, pods, NOW)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("250m", decimal.Decimal("0.25")),
        ("1", decimal.Decimal(1)),
        ("2", decimal.Decimal(2)),
        ("12345n", decimal.Decimal("0.000012345")),
        ("1500u", decimal.Decimal("0.0015")),
        ("128Mi", decimal.Decimal(128 * 1024**2)),
        ("1Gi", decimal.Decimal(1024**3)),
        ("1G", decimal.Decimal(10**9)),
        ("100k", decimal.Decimal(100_000)),
        ("1e3", decimal.Decimal(1000)),
        ("0", decimal.Decimal(0)),
        (3, decimal.Decimal(3)),
        (0.5, decimal.Decimal("0.5")),
    ],
)
def test_quantities(raw: Any, expected: decimal.Decimal) -> None:
    assert parse_quantity(raw, "x") == expected


@pytest.mark.parametrize("raw", ["", "abc", "12Q", "Mi", "1.2.3", None, True, [], {"v": 1}, "-1", "nan"])
def test_bad_quantities(raw: Any) -> None:
    with pytest.raises(SourceError, match="quantity"):
        parse_quantity(raw, "cpu usage of pod p")


def test_cpu_utilization_is_total_usage_over_total_requests() -> None:
    metrics = [pod_metrics("a", {"cpu": "150m", "memory": "10Mi"}), pod_metrics("b", {"cpu": "250000000n"})]
    pods = [pod("a", {"cpu": "200m"}), pod("b", {"cpu": "200m"})]
    assert value("cpu", "Utilization", metrics, pods) == pytest.approx(100.0)


def test_multi_container_pods_sum_their_containers() -> None:
    metrics = [pod_metrics("a", {"cpu": "100m"}, {"cpu": "50m"})]
    pods = [pod("a", {"cpu": "250m"}, {"cpu": "50m"})]
    assert value("cpu", "Utilization", metrics, pods) == pytest.approx(50.0)


def test_native_sidecars_count_but_ordinary_init_containers_do_not() -> None:
    sidecars = [
        {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
        {"name": "migrate", "resources": {}},  # runs to completion before the pod starts: no request needed
    ]
    metrics = [pod_metrics("a", {"cpu": "100m"}, {"cpu": "50m"})]
    pods = [pod("a", {"cpu": "200m"}, sidecars=sidecars)]
    assert value("cpu", "Utilization", metrics, pods) == pytest.approx(50.0)


def test_memory_utilization_and_average_value() -> None:
    metrics = [pod_metrics("a", {"memory": "64Mi"}), pod_metrics("b", {"memory": "192Mi"})]
    pods = [pod("a", {"memory": "128Mi"}), pod("b", {"memory": "128Mi"})]
    assert value("memory", "Utilization", metrics, pods) == pytest.approx(100.0)
    assert value("memory", "AverageValue", metrics, pods) == 128 * 1024**2


def test_cpu_average_value_is_in_cores() -> None:
    metrics = [
        pod_metrics("a", {"cpu": "500m"}),
        pod_metrics("b", {"cpu": "1"}),
        pod_metrics("c", {"cpu": "0"}),
    ]
    pods = [pod("a", None), pod("b", None), pod("c", None)]  # AverageValue does not need requests
    assert value("cpu", "AverageValue", metrics, pods) == pytest.approx(0.5)


def test_deleted_failed_pending_and_unknown_pods_do_not_count() -> None:
    metrics = [
        pod_metrics("ok", {"cpu": "100m"}),
        pod_metrics("deleting", {"cpu": "900m"}),
        pod_metrics("failed", {"cpu": "900m"}),
        pod_metrics("gone", {"cpu": "900m"}),  # listed by metrics-server, no longer a pod
    ]
    pods = [
        pod("ok", {"cpu": "100m"}),
        pod("deleting", {"cpu": "100m"}, deleting=True),
        pod("failed", {"cpu": "300m"}, phase="Failed"),
        pod("pending", {"cpu": "400m"}, phase="Pending", ready="False"),  # no metrics yet
        pod("starting", {"cpu": "500m"}),  # running, no metrics yet
    ]
    assert value("cpu", "Utilization", metrics, pods) == 100.0
    assert value("cpu", "AverageValue", metrics, pods) == pytest.approx(0.1)
    sample = group_pods("cpu", "Utilization", metrics, pods, NOW)
    assert sample == PodSample(
        utilization=True,
        ready=PodGroup((100,), (100,)),
        unready=PodGroup((0,), (400,)),  # Pending: set aside, with its request for a scale-up
        missing=PodGroup((0,), (500,)),  # without metrics: set aside, with its request
        ignored=2,
    )


def test_utilization_is_whole_percent_truncated_and_usage_is_summed_in_milli_units() -> None:
    # metrics/utilization.go: int32(metricsTotal * 100 / requestsTotal); Quantity.MilliValue rounds up.
    metrics = [pod_metrics("a", {"cpu": "333m"}), pod_metrics("b", {"cpu": "12345n"})]
    pods = [pod("a", {"cpu": "500m"}), pod("b", {"cpu": "500m"})]
    assert value("cpu", "Utilization", metrics, pods) == 33.0  # (333 + 1) * 100 // 1000 = 33
    assert value("cpu", "AverageValue", metrics, pods) == 0.167  # (333 + 1) // 2 milli-cores


def test_every_listed_pod_needs_its_request_for_utilization() -> None:
    # calculateRequests covers the whole Pod list, failed and deleted Pods included.
    metrics = [pod_metrics("a", {"cpu": "100m"})]
    pods = [pod("a", {"cpu": "100m"}), pod("b", None, phase="Failed")]
    with pytest.raises(SourceError, match="missing request for cpu in container c0 of pod b"):
        value("cpu", "Utilization", metrics, pods)
    assert value("cpu", "AverageValue", metrics, pods) == 0.1  # AverageValue needs no request


def test_pod_level_requests_are_used_when_set() -> None:
    # calculateRequests: with pod-level requests (KEP-2837), those, plus the pod's overhead.
    metrics = [pod_metrics("a", {"cpu": "300m"}, {"cpu": "100m"})]
    with_overhead = pod("a", None, None, pod_level={"cpu": "700m", "memory": "1Gi"})
    with_overhead["spec"]["overhead"] = {"cpu": "100m"}
    assert value("cpu", "Utilization", metrics, [with_overhead]) == 50.0  # 400m of 800m
    memory_only = pod("a", {"cpu": "200m"}, {"cpu": "200m"}, pod_level={"memory": "1Gi"})
    assert value("cpu", "Utilization", metrics, [memory_only]) == 100.0  # cpu from the containers


@pytest.mark.parametrize(
    ("raw", "seconds"), [("15s", 15), ("1m0s", 60), ("10.5s", 10.5), ("1h2m", 3720), ("500ms", 0.5)]
)
def test_metric_windows_are_go_durations(raw: str, seconds: float) -> None:
    assert go_duration(raw) == datetime.timedelta(seconds=seconds)


@pytest.mark.parametrize("raw", ["", "15", "s", "1x", "-1s", None, 15])
def test_bad_metric_windows(raw: Any) -> None:
    assert go_duration(raw) is None


# kubernetes/kubernetes replica_calculator_test.go TestGroupPods (cpu initialization period 2 min,
# initial readiness delay 10 s, as there); each row is one Pod: (ready, missing, unready, ignored).
TWO_MINUTES, TEN_SECONDS = datetime.timedelta(minutes=2), datetime.timedelta(seconds=10)


@pytest.mark.parametrize(
    ("case", "resource", "the_pod", "the_metrics", "expected"),
    [
        (
            "count in a ready pod - memory",
            "memory",
            pod("p", ready=None, started=None),
            pod_metrics("p", {"memory": "1"}),
            (1, 0, 0, 0),
        ),
        (
            "unready a pod without ready condition - CPU",
            "cpu",
            pod("p", ready=None, started=0),
            pod_metrics("p", {"cpu": "1m"}),
            (0, 0, 1, 0),
        ),
        (
            "count in a ready pod with fresh metrics during initialization period - CPU",
            "cpu",
            pod("p", started=60, transition=30),
            pod_metrics("p", {"cpu": "1m"}, window="30s"),
            (1, 0, 0, 0),
        ),
        (
            "unready a ready pod without fresh metrics during initialization period - CPU",
            "cpu",
            pod("p", started=60, transition=30),
            pod_metrics("p", {"cpu": "1m"}, window="1m0s"),
            (0, 0, 1, 0),
        ),
        (
            "unready an unready pod during initialization period - CPU",
            "cpu",
            pod("p", ready="False", started=600, transition=594),
            pod_metrics("p", {"cpu": "1m"}),
            (0, 0, 1, 0),
        ),
        (
            "count in a ready pod without fresh metrics after initialization period - CPU",
            "cpu",
            pod("p", started=180, transition=180),
            pod_metrics("p", {"cpu": "1m"}, sampled=120, window="1m0s"),
            (1, 0, 0, 0),
        ),
        (
            "count in an unready pod that was ready after initialization period - CPU",
            "cpu",
            pod("p", ready="False", started=600, transition=540),
            pod_metrics("p", {"cpu": "1m"}),
            (1, 0, 0, 0),
        ),
        (
            "a pod that turned unready exactly the readiness delay after its start counts - CPU",
            "cpu",
            pod("p", ready="False", started=600, transition=590),
            pod_metrics("p", {"cpu": "1m"}),
            (1, 0, 0, 0),
        ),
        (
            "unready pod that never was ready (unready within the delay) after initialization - CPU",
            "cpu",
            pod("p", ready="False", started=600, transition=595),
            pod_metrics("p", {"cpu": "1m"}),
            (0, 0, 1, 0),
        ),
        (
            "a missing pod",
            "cpu",
            pod("p", started=180, transition=180),
            pod_metrics("other", {"cpu": "1m"}),
            (0, 1, 0, 0),
        ),
        (
            "pending pods are unreadied",
            "cpu",
            pod("p", phase="Pending", ready=None, started=None),
            pod_metrics("p", {"cpu": "1m"}),
            (0, 0, 1, 0),
        ),
        (
            "ignore pods with deletion timestamps",
            "cpu",
            pod("p", phase="Pending", deleting=True),
            pod_metrics("p", {"cpu": "1m"}),
            (0, 0, 0, 1),
        ),
        (
            "ignore pods in a failed state",
            "cpu",
            pod("p", phase="Failed"),
            pod_metrics("p", {"cpu": "1m"}),
            (0, 0, 0, 1),
        ),
        # metrics/client.go getPodMetrics: a PodMetrics without every container's usage is no metric.
        (
            "a container without usage: no metric",
            "cpu",
            pod("p"),
            pod_metrics("p", {"cpu": "1m"}, {"memory": "1Mi"}),
            (0, 1, 0, 0),
        ),
        ("no containers in the PodMetrics: no metric", "cpu", pod("p"), pod_metrics("p"), (0, 1, 0, 0)),
        # memory has no readiness rule: a not-ready Pod with metrics counts.
        (
            "memory of a pod that is not ready counts",
            "memory",
            pod("p", ready="False", started=10, transition=5),
            pod_metrics("p", {"memory": "1"}),
            (1, 0, 0, 0),
        ),
    ],
)
def test_pods_are_grouped_as_the_hpa_groups_them(
    case: str,
    resource: str,
    the_pod: dict[str, Any],
    the_metrics: dict[str, Any],
    expected: tuple[int, int, int, int],
) -> None:
    # A second Pod, ready and long running, keeps every sample usable.
    pods = [the_pod, pod("anchor")]
    metrics = [the_metrics, pod_metrics("anchor", {resource: "1m" if resource == "cpu" else "1"})]
    sample = group_pods(resource, "AverageValue", metrics, pods, NOW, TWO_MINUTES, TEN_SECONDS)
    counts = (sample.ready.count - 1, sample.missing.count, sample.unready.count, sample.ignored)
    assert counts == expected, case


def test_with_the_controller_defaults_a_pod_is_starting_for_five_minutes() -> None:
    # --horizontal-pod-autoscaler-cpu-initialization-period=5m: three minutes after its start, a
    # Pod whose sample predates a full window since it turned Ready is still set aside.
    pods = [pod("p", started=180, transition=170), pod("anchor")]
    metrics = [
        pod_metrics("p", {"cpu": "1m"}, sampled=120, window="1m0s"),
        pod_metrics("anchor", {"cpu": "1m"}),
    ]
    assert group_pods("cpu", "AverageValue", metrics, pods, NOW).unready.count == 1
    assert group_pods("cpu", "AverageValue", metrics, pods, NOW, TWO_MINUTES).unready.count == 0


@pytest.mark.parametrize(
    ("resource", "target", "metrics", "pods", "message"),
    [
        (
            "cpu",
            "Utilization",
            [pod_metrics("a", {"cpu": "100m"}), pod_metrics("b", {"cpu": "100m"})],
            [pod("a", {"cpu": "100m"}), pod("b", {"memory": "1Gi"})],
            "missing request for cpu in container c0 of pod b",
        ),
        (
            "cpu",
            "Utilization",
            [pod_metrics("a", {"cpu": "100m"}, {"cpu": "1m"})],
            [pod("a", {"cpu": "100m"}, None)],
            "missing request for cpu in container c1 of pod a",
        ),
        ("cpu", "Utilization", [pod_metrics("a", {"cpu": "1m"})], [pod("a", {"cpu": "0"})], "sum to zero"),
        (
            "cpu",
            "Utilization",
            [],
            [pod("a", {"cpu": "1"})],
            "no cpu metrics for any pod of the workload (1 pods)",
        ),
        ("memory", "AverageValue", [], [], "no pods match the workload's selector"),
        (
            "cpu",
            "AverageValue",
            [pod_metrics("a", {"cpu": "1m"})],
            [],
            "no pods match the workload's selector",
        ),
        (
            "cpu",
            "AverageValue",
            [pod_metrics("a", {"memory": "1Mi"})],
            [pod("a"), pod("b", phase="Pending"), pod("c", deleting=True)],
            "no cpu metrics for any ready pod of the workload (3 pods: 1 not ready, 1 without metrics, "
            "1 deleted or failed)",
        ),
        (
            "cpu",
            "AverageValue",
            [pod_metrics("a", {"cpu": "lots"})],
            [pod("a")],
            "'lots' is not a Kubernetes",
        ),
        (
            "cpu",
            "Utilization",
            [pod_metrics("a", {"cpu": "1m"})],
            [pod("a", {"cpu": "fast"})],
            "cpu request of pod a: 'fast' is not a Kubernetes quantity",
        ),
    ],
)
def test_errors(resource: str, target: str, metrics: list[Any], pods: list[Any], message: str) -> None:
    with pytest.raises(SourceError) as excinfo:
        value(resource, target, metrics, pods)
    assert message in str(excinfo.value)


def test_garbage_items_are_skipped_or_reported() -> None:
    pods: list[Any] = [pod("a", {"cpu": "1"}), "junk"]
    metrics: list[Any] = ["junk", pod_metrics("a", {"cpu": "1"})]
    assert value("cpu", "Utilization", metrics, pods) == 100.0


@pytest.mark.parametrize(
    ("config", "target", "message"),
    [
        ({"name": "gpu"}, {"type": "Utilization", "value": 70}, "name must be one of cpu, memory"),
        ({}, {"type": "Utilization"}, "name must be one of"),
        (
            {"name": "cpu"},
            {"type": "Value", "value": 70},
            "target.type must be one of Utilization, AverageValue",
        ),
        ({"name": "cpu"}, None, "target.type must be one of"),
    ],
)
def test_config_errors(config: dict[str, Any], target: Any, message: str) -> None:
    with pytest.raises(SourceError) as excinfo:
        parse_config(config, target)
    assert message in str(excinfo.value)
