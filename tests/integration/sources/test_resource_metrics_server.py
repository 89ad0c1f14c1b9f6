"""The ``resource`` source against a real metrics-server on the local control plane.

kwok runs the pods and simulates each container's usage from the pod's ``kwok.x-k8s.io/usage-*``
annotations; metrics-server scrapes kwok every 10 s and serves PodMetrics through the aggregator.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kopfscale.scaledapp.sources import MetricReading
from kopfscale_devcluster.metrics import USAGE_CPU_ANNOTATION, USAGE_MEMORY_ANNOTATION

from ...conftest import Cluster
from ...helpers import wait_for
from .util import read_once

pytestmark = pytest.mark.integration

NEW_POD_METRICS_WITHIN = 75.0  # seconds: two scrapes 10 s apart, on a busy box
USAGE_CHANGE_WITHIN = 45.0
SELECTOR = "app=web"


def spec(resource: str, target: str) -> dict[str, Any]:
    return {
        "name": f"{resource}-{target}".lower(),
        "type": "resource",
        "resource": {"name": resource},
        "target": {"type": target, "value": 70},
    }


def read(namespace: str, resource: str, target: str, selector: str = SELECTOR) -> MetricReading:
    return read_once(spec(resource, target), namespace=namespace, pod_selector=selector)


def read_near(
    namespace: str, resource: str, target: str, expected: float, tolerance: float
) -> MetricReading | None:
    """The reading if its value is ``expected`` within ``tolerance``, else None (for ``wait_for``)."""
    reading = read(namespace, resource, target)
    ok = reading.value is not None and abs(reading.value - expected) <= tolerance
    return reading if ok else None


def run_web(cluster: Cluster, namespace: str, replicas: int, cpu: str, memory: str) -> list[str]:
    """A Deployment whose one container requests 100m CPU and 64Mi memory; its running pods' names."""
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {
                    "labels": {"app": "web"},
                    "annotations": {USAGE_CPU_ANNOTATION: cpu, USAGE_MEMORY_ANNOTATION: memory},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "registry.example/web:1",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ]
                },
            },
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    def running() -> list[str]:
        out = cluster.kubectl("get", "pods", "-n", namespace, "-l", SELECTOR, "-o", "json").stdout
        names = [
            p["metadata"]["name"] for p in json.loads(out)["items"] if p["status"].get("phase") == "Running"
        ]
        return sorted(names) if len(names) == replicas else []

    return wait_for(running, timeout=60, what=f"{replicas} running web pods")


def set_usage(cluster: Cluster, namespace: str, pod: str, cpu: str) -> None:
    cluster.kubectl("annotate", "pod", "-n", namespace, pod, "--overwrite", f"{USAGE_CPU_ANNOTATION}={cpu}")


def test_utilization_and_average_value_from_metrics_server(cluster: Cluster, namespace: str) -> None:
    pods = run_web(cluster, namespace, 2, cpu="70m", memory="48Mi")

    # requests 100m, usage 70m on both pods → 70 % of the request.
    reading = wait_for(
        lambda: read_near(namespace, "cpu", "Utilization", 70, 2),
        timeout=NEW_POD_METRICS_WITHIN,
        interval=1,
        what="cpu Utilization ≈ 70 from metrics-server",
    )
    assert reading.name == "cpu-utilization"
    assert read_near(namespace, "cpu", "AverageValue", 0.07, 0.002)  # cores per pod
    # Memory is a gauge: exact. 48Mi of 64Mi requested → 75 %, and 48Mi bytes per pod.
    assert read(namespace, "memory", "Utilization") == MetricReading(name="memory-utilization", value=75.0)
    assert read(namespace, "memory", "AverageValue") == MetricReading(
        name="memory-averagevalue", value=48 * 1024 * 1024
    )

    # Both pods at 150m → 150 %; then one back to 50m → (150 + 50) / 2 = 100 %.
    for pod in pods:
        set_usage(cluster, namespace, pod, "150m")
    wait_for(
        lambda: read_near(namespace, "cpu", "Utilization", 150, 3),
        timeout=USAGE_CHANGE_WITHIN,
        interval=1,
        what="cpu Utilization ≈ 150 after raising the usage",
    )
    set_usage(cluster, namespace, pods[0], "50m")
    wait_for(
        lambda: read_near(namespace, "cpu", "Utilization", 100, 3),
        timeout=USAGE_CHANGE_WITHIN,
        interval=1,
        what="cpu Utilization ≈ 100 after lowering one pod's usage",
    )
    assert read_near(namespace, "cpu", "AverageValue", 0.1, 0.003)

    # A selector that matches none of the pods: no metrics to compute from, a readable error.
    reading = read(namespace, "cpu", "Utilization", selector="app=nothing")
    assert reading.value is None
    assert reading.error is not None
    assert reading.error == "resource cpu: no pods match the workload's selector"
