"""The peers on the local control plane: the real KEDA and the real HPA scale Deployments whose
Pods kwok runs, with metrics from a loopback HTTP endpoint (KEDA ``metrics-api``) and from
metrics-server (the HPA on CPU), as the shadow and the benchmark beside them will need."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kopfscale_devcluster.metrics import USAGE_CPU_ANNOTATION
from tests.conftest import Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


class MetricEndpoint:
    """``GET /metric`` answers ``{"value": <value>}``; a test changes ``value``."""

    def __init__(self) -> None:
        self.value = 0.0
        self.hits = 0
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.hits += 1
                body = json.dumps({"value": endpoint.value}).encode()
                self.send_response(200 if self.path == "/metric" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metric"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture()
def endpoint() -> Iterator[MetricEndpoint]:
    served = MetricEndpoint()
    yield served
    served.server.shutdown()
    served.server.server_close()


def deployment(name: str, annotations: dict[str, str] | None = None) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": "registry.invalid/app:1",
                                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                            }
                        ]
                    },
                },
            },
        }
    )


def get(cluster: Cluster, namespace: str, *what: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cluster.kubectl("get", "-n", namespace, *what, "-o", "json").stdout)
    return result


def replicas(cluster: Cluster, namespace: str, name: str) -> tuple[int, int]:
    """(spec.replicas, status.readyReplicas) of a Deployment."""
    body = get(cluster, namespace, "deployment", name)
    return body["spec"]["replicas"], body.get("status", {}).get("readyReplicas", 0)


def test_keda_scaled_object_with_a_metrics_api_trigger_scales_a_deployment(
    peers: Cluster, namespace: str, endpoint: MetricEndpoint
) -> None:
    peers.kubectl("apply", "-n", namespace, "-f", "-", input=deployment("keda-app"))
    endpoint.value = 8  # AverageValue 2 per Pod -> ceil(8 / 2) = 4 replicas
    scaled_object = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "keda-app"},
        "spec": {
            "scaleTargetRef": {"name": "keda-app"},
            "pollingInterval": 2,
            "minReplicaCount": 1,
            "maxReplicaCount": 10,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}
                }
            },
            "triggers": [
                {
                    "type": "metrics-api",
                    "metadata": {"url": endpoint.url, "valueLocation": "value", "targetValue": "2"},
                }
            ],
        },
    }
    peers.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(scaled_object))

    def ready() -> bool:
        conditions = get(peers, namespace, "scaledobject", "keda-app").get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_for(ready, timeout=60, what="the ScaledObject to be Ready")
    hpa = get(peers, namespace, "hpa", "keda-hpa-keda-app")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "keda-app"
    assert hpa["spec"]["metrics"][0]["type"] == "External"

    wait_for(lambda: replicas(peers, namespace, "keda-app") == (4, 4), timeout=90, what="4 ready replicas")
    assert endpoint.hits > 0  # KEDA read the loopback endpoint itself

    endpoint.value = 2  # -> ceil(2 / 2) = 1
    wait_for(lambda: replicas(peers, namespace, "keda-app") == (1, 1), timeout=90, what="back to 1 replica")


def test_hpa_on_cpu_from_metrics_server_gets_a_desired_count(peers: Cluster, namespace: str) -> None:
    # Each Pod uses 200m of its 100m request (kwok's simulated usage): 200 % against a 50 % target.
    peers.kubectl(
        "apply", "-n", namespace, "-f", "-", input=deployment("cpu-app", {USAGE_CPU_ANNOTATION: "200m"})
    )
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "cpu-app"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cpu-app"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                }
            ],
        },
    }
    peers.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(hpa))

    def desired() -> int:
        return int(get(peers, namespace, "hpa", "cpu-app").get("status", {}).get("desiredReplicas", 0))

    wait_for(lambda: desired() == 3, timeout=120, what="the HPA to want 3 replicas (capped by maxReplicas)")
    status = get(peers, namespace, "hpa", "cpu-app")["status"]
    cpu = status["currentMetrics"][0]["resource"]["current"]
    # 200 % as simulated; metrics-server's rate over one scrape interval wobbles a little on a busy
    # machine (kwok charges the interval it measures), which the HPA's 10 % tolerance ignores too.
    assert 150 <= cpu["averageUtilization"] <= 250, cpu
    wait_for(lambda: replicas(peers, namespace, "cpu-app") == (3, 3), timeout=60, what="3 ready replicas")
    conditions = {c["type"]: c for c in get(peers, namespace, "hpa", "cpu-app")["status"]["conditions"]}
    assert conditions["ScalingLimited"]["status"] == "True"
    assert conditions["ScalingLimited"]["reason"] == "TooManyReplicas"
