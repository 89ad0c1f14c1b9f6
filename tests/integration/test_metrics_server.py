"""metrics.k8s.io on the local control plane: a real metrics-server scraping kwok's simulated usage.

The usage of every container of a pod is what its ``kwok.x-k8s.io/usage-cpu`` and
``kwok.x-k8s.io/usage-memory`` annotations say (see ``kopfscale_devcluster.metrics``).
"""

from __future__ import annotations

import decimal
import json
from typing import Any

import kubernetes
import pytest

from kopfscale_devcluster.metrics import (
    APISERVICE_NAME,
    USAGE_CPU_ANNOTATION,
    USAGE_MEMORY_ANNOTATION,
)

from ..conftest import Cluster
from ..helpers import wait_for

pytestmark = pytest.mark.integration

# metrics-server scrapes every 10 s and CPU is a rate between two scrapes: a new pod has PodMetrics
# after 10-20 s (30 s for the first pod a kwok process ever serves), a changed usage shows after one
# scrape. Generous, for a busy 2-core box.
NEW_POD_METRICS_WITHIN = 75.0
USAGE_CHANGE_WITHIN = 45.0
CPU_TOLERANCE = decimal.Decimal("0.002")  # cores; kwok integrates usage over wall-clock time

parse_quantity = kubernetes.utils.parse_quantity


def deployment(name: str, replicas: int, cpu: str, memory: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {USAGE_CPU_ANNOTATION: cpu, USAGE_MEMORY_ANNOTATION: memory},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/app:1",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ]
                },
            },
        },
    }


def create_deployment(cluster: Cluster, namespace: str, name: str, replicas: int, **usage: str) -> list[str]:
    """Create the Deployment and return its pods' names once kwok runs them all."""
    manifest = json.dumps(deployment(name, replicas, **usage))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)

    def running() -> list[str]:
        pods = json.loads(
            cluster.kubectl("get", "pods", "-n", namespace, "-l", f"app={name}", "-o", "json").stdout
        )
        names = [p["metadata"]["name"] for p in pods["items"] if p["status"].get("phase") == "Running"]
        return sorted(names) if len(names) == replicas else []

    return wait_for(running, timeout=60, what=f"{replicas} running pods of {name}")


def pod_metrics(cluster: Cluster, namespace: str, selector: str | None = None) -> dict[str, dict[str, Any]]:
    """PodMetrics by pod name, read through the aggregator like ``kubectl top pods``."""
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
    if selector:
        path += f"?labelSelector={selector}"
    doc = json.loads(cluster.kubectl("get", "--raw", path).stdout)
    assert doc["kind"] == "PodMetricsList"
    return {item["metadata"]["name"]: item for item in doc["items"]}


def usage(item: dict[str, Any], resource: str) -> decimal.Decimal:
    return sum((parse_quantity(c["usage"][resource]) for c in item["containers"]), decimal.Decimal(0))


def shows(cluster: Cluster, namespace: str, pods: list[str], cpu: str, memory: str) -> bool:
    """Whether every pod's PodMetrics show this usage (cpu within tolerance, memory exactly)."""
    items = pod_metrics(cluster, namespace)
    return all(
        name in items
        and abs(usage(items[name], "cpu") - parse_quantity(cpu)) <= CPU_TOLERANCE
        and usage(items[name], "memory") == parse_quantity(memory)
        for name in pods
    )


def test_apiservice_is_registered_and_available(cluster: Cluster) -> None:
    apiservice = json.loads(cluster.kubectl("get", "apiservice", APISERVICE_NAME, "-o", "json").stdout)
    conditions = {c["type"]: c["status"] for c in apiservice["status"]["conditions"]}
    assert conditions["Available"] == "True"
    assert apiservice["spec"]["service"]["namespace"] == "kube-system"
    assert apiservice["spec"].get("insecureSkipTLSVerify") is not True  # verified against the cluster CA
    resources = cluster.kubectl("api-resources", "--api-group=metrics.k8s.io", "-o", "name").stdout.split()
    assert sorted(resources) == ["nodes.metrics.k8s.io", "pods.metrics.k8s.io"]


def test_pod_metrics_follow_the_simulated_usage(cluster: Cluster, namespace: str) -> None:
    pods = create_deployment(cluster, namespace, "web", 2, cpu="70m", memory="50Mi")
    wait_for(
        lambda: shows(cluster, namespace, pods, "70m", "50Mi"),
        timeout=NEW_POD_METRICS_WITHIN,
        interval=1,
        what="PodMetrics of 70m / 50Mi for both pods",
    )
    item = pod_metrics(cluster, namespace, "app=web")[pods[0]]
    assert [c["name"] for c in item["containers"]] == ["app"]
    assert item["metadata"]["labels"]["app"] == "web"
    assert 5 <= float(item["window"].removesuffix("s")) <= 15  # one scrape (--metric-resolution=10s)

    # Change one pod's usage: its metrics follow, the other pod's stay.
    cluster.kubectl(
        "annotate",
        "pod",
        "-n",
        namespace,
        pods[0],
        "--overwrite",
        f"{USAGE_CPU_ANNOTATION}=250m",
        f"{USAGE_MEMORY_ANNOTATION}=200Mi",
    )
    wait_for(
        lambda: shows(cluster, namespace, pods[:1], "250m", "200Mi"),
        timeout=USAGE_CHANGE_WITHIN,
        interval=1,
        what="PodMetrics of 250m / 200Mi for the annotated pod",
    )
    assert shows(cluster, namespace, pods[1:], "70m", "50Mi")

    # Node metrics add up the pods on the (single) kwok node, this test's included.
    nodes = json.loads(cluster.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes").stdout)
    node_cpu = {n["metadata"]["name"]: parse_quantity(n["usage"]["cpu"]) for n in nodes["items"]}
    assert node_cpu and all(cpu >= parse_quantity("0.07") for cpu in node_cpu.values())


def test_kubectl_top_pods(cluster: Cluster, namespace: str) -> None:
    pods = create_deployment(cluster, namespace, "api", 1, cpu="300m", memory="128Mi")
    wait_for(
        lambda: shows(cluster, namespace, pods, "300m", "128Mi"),
        timeout=NEW_POD_METRICS_WITHIN,
        interval=1,
        what="PodMetrics of 300m / 128Mi",
    )
    top = cluster.kubectl("top", "pods", "-n", namespace, "--no-headers").stdout.split()
    assert top[0] == pods[0]
    assert abs(parse_quantity(top[1]) - parse_quantity("300m")) <= CPU_TOLERANCE + decimal.Decimal("0.001")
    assert top[2] == "128Mi"
