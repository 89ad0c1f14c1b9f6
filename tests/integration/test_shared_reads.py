"""Identical reads once, on the real control plane: several ScaledApps reading one loopback
endpoint with the same question cost it one request per polling interval, and each ScaledApp
still has the value in its status and scales on it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kopf.testing import KopfRunner
from prometheus_client import REGISTRY

from tests.conftest import Cluster
from tests.helpers import JsonServer, wait_for

from .test_scaledapp import get, replicas, scaledapp

pytestmark = pytest.mark.integration

FLEET = 6
INTERVAL = 2  # pollingInterval, seconds


class CountingServer(JsonServer):
    """Serves ``{"load": <value>}`` and remembers when each request came."""

    def __init__(self) -> None:
        self.value = 5.0
        self.times: list[float] = []
        self.lock = threading.Lock()
        super().__init__(self.answer)

    def answer(self, headers: dict[str, str]) -> tuple[int, bytes]:
        with self.lock:
            self.times.append(time.monotonic())
        return 200, json.dumps({"load": self.value}).encode()

    def since(self, started: float) -> int:
        with self.lock:
            return sum(1 for t in self.times if t >= started)


@pytest.fixture()
def server() -> Iterator[CountingServer]:
    s = CountingServer()
    yield s
    s.close()


def saved() -> float:
    return REGISTRY.get_sample_value("kopfscale_metric_queries_saved_total", {"type": "http"}) or 0.0


def values(cluster: Cluster, namespace: str) -> dict[str, Any]:
    items = json.loads(cluster.kubectl("get", "scaledapps", "-n", namespace, "-o", "json").stdout)["items"]
    return {
        item["metadata"]["name"]: (item.get("status", {}).get("metrics") or [{}])[0].get("value")
        for item in items
    }


def test_scaledapps_asking_the_same_share_one_request_per_interval(
    cluster: Cluster, namespace: str, operator: KopfRunner, server: CountingServer
) -> None:
    names = [f"fleet-{i}" for i in range(FLEET)]
    fleet = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [scaledapp(name, server.url, pollingInterval=INTERVAL) for name in names],
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(fleet))  # created together
    wait_for(
        lambda: values(cluster, namespace) == dict.fromkeys(names, 5),
        timeout=30,
        what="every ScaledApp with the value 5 in status",
    )

    saved_before, started = saved(), time.monotonic()
    rounds = 4
    time.sleep(rounds * INTERVAL)
    requests = server.since(started)
    print(
        f"{FLEET} ScaledApps, {rounds} intervals of {INTERVAL}s: {requests} requests "
        f"(alone: {FLEET * rounds})"
    )
    assert 1 <= requests <= rounds + 1, f"{requests} requests in {rounds} intervals"
    assert saved() - saved_before >= FLEET * rounds - (rounds + 1) - FLEET  # every other read shared

    server.value = 38  # ceil(38 / 10) = 4, for each of them
    wait_for(
        lambda: all(replicas(cluster, namespace, name) == 4 for name in names),
        timeout=15,
        what="every ScaledApp's Deployment at 4",
    )
    assert values(cluster, namespace) == dict.fromkeys(names, 38)
    assert all(
        get(cluster, namespace, "scaledapp", n)["status"]["metrics"][0].get("error") is None for n in names
    )
