"""PodMetrics + Pods → the HPA's resource metric value (pure), and Kubernetes quantities."""

from __future__ import annotations

import decimal
from typing import Any

import pytest

from kopfscale.scaledapp.sources.base import SourceError
from kopfscale.scaledapp.sources.resource import compute_value, parse_config, parse_quantity


def pod_metrics(name: str, *usages: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "timestamp": "2024-03-04T12:00:00Z",
        "window": "15s",
        "containers": [{"name": f"c{i}", "usage": usage} for i, usage in enumerate(usages)],
    }


def pod(
    name: str,
    *requests: dict[str, str] | None,
    phase: str = "Running",
    deleting: bool = False,
    sidecars: list[dict[str, Any]] | None = None,
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
    return {"metadata": metadata, "spec": spec, "status": {"phase": phase}}


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
    assert compute_value("cpu", "Utilization", metrics, pods) == pytest.approx(100.0)


def test_multi_container_pods_sum_their_containers() -> None:
    metrics = [pod_metrics("a", {"cpu": "100m"}, {"cpu": "50m"})]
    pods = [pod("a", {"cpu": "250m"}, {"cpu": "50m"})]
    assert compute_value("cpu", "Utilization", metrics, pods) == pytest.approx(50.0)


def test_native_sidecars_count_but_ordinary_init_containers_do_not() -> None:
    sidecars = [
        {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
        {"name": "migrate", "resources": {}},  # runs to completion before the pod starts: no request needed
    ]
    metrics = [pod_metrics("a", {"cpu": "100m"}, {"cpu": "50m"})]
    pods = [pod("a", {"cpu": "200m"}, sidecars=sidecars)]
    assert compute_value("cpu", "Utilization", metrics, pods) == pytest.approx(50.0)


def test_memory_utilization_and_average_value() -> None:
    metrics = [pod_metrics("a", {"memory": "64Mi"}), pod_metrics("b", {"memory": "192Mi"})]
    pods = [pod("a", {"memory": "128Mi"}), pod("b", {"memory": "128Mi"})]
    assert compute_value("memory", "Utilization", metrics, pods) == pytest.approx(100.0)
    assert compute_value("memory", "AverageValue", metrics, pods) == 128 * 1024**2


def test_cpu_average_value_is_in_cores() -> None:
    metrics = [
        pod_metrics("a", {"cpu": "500m"}),
        pod_metrics("b", {"cpu": "1"}),
        pod_metrics("c", {"cpu": "0"}),
    ]
    pods = [pod("a", None), pod("b", None), pod("c", None)]  # AverageValue does not need requests
    assert compute_value("cpu", "AverageValue", metrics, pods) == pytest.approx(0.5)


def test_deleted_failed_and_unknown_pods_do_not_count() -> None:
    metrics = [
        pod_metrics("ok", {"cpu": "100m"}),
        pod_metrics("deleting", {"cpu": "900m"}),
        pod_metrics("failed", {"cpu": "900m"}),
        pod_metrics("gone", {"cpu": "900m"}),  # listed by metrics-server, no longer a pod
    ]
    pods = [
        pod("ok", {"cpu": "100m"}),
        pod("deleting", {"cpu": "100m"}, deleting=True),
        pod("failed", None, phase="Failed"),  # not counted, so its missing request does not matter
        pod("pending", None, phase="Pending"),  # no metrics yet: not counted
    ]
    assert compute_value("cpu", "Utilization", metrics, pods) == pytest.approx(100.0)
    assert compute_value("cpu", "AverageValue", metrics, pods) == pytest.approx(0.1)


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
        ("cpu", "Utilization", [], [pod("a", {"cpu": "1"})], "no cpu metrics for any running pod"),
        ("memory", "AverageValue", [], [], "no memory metrics"),
        (
            "cpu",
            "AverageValue",
            [pod_metrics("a", {"memory": "1Mi"})],
            [pod("a")],
            "no cpu usage of container c0",
        ),
        ("cpu", "AverageValue", [pod_metrics("a")], [pod("a")], "has no container metrics"),
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
        compute_value(resource, target, metrics, pods)
    assert message in str(excinfo.value)


def test_garbage_items_are_skipped_or_reported() -> None:
    pods: list[Any] = [pod("a", {"cpu": "1"}), "junk"]
    metrics: list[Any] = ["junk", pod_metrics("a", {"cpu": "1"})]
    assert compute_value("cpu", "Utilization", metrics, pods) == 100.0


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
