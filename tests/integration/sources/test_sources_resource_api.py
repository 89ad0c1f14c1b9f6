"""The resource source through the shared kube transport against a local fake API server
serving recorded metrics.k8s.io and core/v1 responses (a real metrics-server is the lead's job)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from kopfscale.kube import Transport
from kopfscale.scaledapp.sources import MetricReading, resource

from .servers import Reply, StubServer
from .util import read_once, read_timed

METRICS_PATH = "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods"
PODS_PATH = "/api/v1/namespaces/shop/pods"

POD_METRICS = {
    "kind": "PodMetricsList",
    "apiVersion": "metrics.k8s.io/v1beta1",
    "metadata": {},
    "items": [
        {
            "metadata": {"name": f"web-{i}", "namespace": "shop", "labels": {"app": "web"}},
            "timestamp": "2024-03-04T11:59:50Z",
            "window": "15s",
            "containers": [
                {"name": "web", "usage": {"cpu": cpu, "memory": "100Mi"}},
                {"name": "proxy", "usage": {"cpu": "10m", "memory": "28Mi"}},
            ],
        }
        for i, cpu in enumerate(["290m", "120000000n"])
    ],
}


def pod(name: str, *, deleting: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "shop", "labels": {"app": "web"}, "uid": name}
    if deleting:
        metadata["deletionTimestamp"] = "2024-03-04T11:59:00Z"
    requests = [("web", {"cpu": "250m", "memory": "128Mi"}), ("proxy", {"cpu": "50m", "memory": "64Mi"})]
    return {
        "metadata": metadata,
        "spec": {
            "containers": [{"name": n, "image": "x", "resources": {"requests": r}} for n, r in requests]
        },
        "status": {
            "phase": "Running",
            "startTime": "2024-03-04T10:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-03-04T10:00:12Z"}],
        },
    }


PODS = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod("web-0"), pod("web-1")]}


@pytest.fixture()
def fake_api(stub_server: StubServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    configuration = kubernetes.client.Configuration(host=stub_server.url)
    client = kubernetes.client.ApiClient(configuration)
    monkeypatch.setattr(resource.SCALER, "transport", Transport(client=lambda: client))
    stub_server.reply(METRICS_PATH, Reply(body=json.dumps(POD_METRICS).encode()))
    stub_server.reply(PODS_PATH, Reply(body=json.dumps(PODS).encode()))
    yield stub_server
    client.close()  # type: ignore[no-untyped-call]


def spec(resource: str, target: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": resource,
        "type": "resource",
        "resource": {"name": resource, **extra},
        "target": {"type": target, "value": 70},
    }


def test_cpu_utilization(fake_api: StubServer) -> None:
    reading = read_once(spec("cpu", "Utilization"), namespace="shop", pod_selector="app=web,tier in (front)")
    # usage (0.29 + 0.01) + (0.12 + 0.01) = 0.43 cores over requests 2 * 0.3 = 0.6 cores: 71.67 %,
    # reported in whole percent (truncated) as the HPA does.
    assert reading.error is None
    assert reading.value == 71.0
    selectors = {
        urllib.parse.parse_qs(urllib.parse.urlsplit(r.path).query)["labelSelector"][0]
        for r in fake_api.requests
    }
    assert selectors == {"app=web,tier in (front)"}
    assert {urllib.parse.urlsplit(r.path).path for r in fake_api.requests} == {METRICS_PATH, PODS_PATH}


def test_memory_average_value_in_bytes(fake_api: StubServer) -> None:
    reading = read_once(spec("memory", "AverageValue"), namespace="shop", pod_selector="app=web")
    assert reading == MetricReading(name="memory", value=128 * 1024 * 1024)


def test_terminating_pods_do_not_count(fake_api: StubServer) -> None:
    pods = {**PODS, "items": [pod("web-0"), pod("web-1", deleting=True)]}
    fake_api.reply(PODS_PATH, Reply(body=json.dumps(pods).encode()))
    reading = read_once(spec("cpu", "AverageValue"), namespace="shop", pod_selector="app=web")
    assert reading.value == pytest.approx(0.3)


def test_metrics_api_not_served(fake_api: StubServer) -> None:
    fake_api.reply(METRICS_PATH, Reply(status=404, body=b'{"kind":"Status","code":404}'))
    reading = read_once(spec("cpu", "Utilization"), namespace="shop", pod_selector="app=web")
    assert reading.error == (
        "resource cpu: metrics.k8s.io/v1beta1 is not served (HTTP 404); install metrics-server"
    )


def test_slow_api_times_out(fake_api: StubServer) -> None:
    fake_api.reply(METRICS_PATH, Reply(body=json.dumps(POD_METRICS).encode(), delay=10))
    reading, elapsed = read_timed(
        spec("cpu", "Utilization", timeout=0.5), namespace="shop", pod_selector="app=web"
    )
    assert reading == MetricReading(name="cpu", error="resource cpu: timed out after 0.5s")
    assert elapsed < 2.5
