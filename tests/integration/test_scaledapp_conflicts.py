"""One autoscaler per workload, on the real control plane: a second ScaledApp and a real HPA on a
Deployment another ScaledApp already drives are refused (Ready=False Conflict, one Warning event),
never write its replicas, and the conflict clears by itself when the other goes away."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from kopf.testing import KopfRunner

from tests.conftest import Cluster
from tests.helpers import wait_for
from tests.integration.test_scaledapp import (
    MetricServer,
    apply,
    condition,
    events,
    get,
    replicas,
    scaledapp,
    wait_replicas,
)

pytestmark = pytest.mark.integration
CPU_50 = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}


@pytest.fixture()
def metric_server() -> Iterator[MetricServer]:
    server = MetricServer()
    yield server
    server.close()


def ready_message(cluster: Cluster, namespace: str, name: str) -> str:
    return str(condition(cluster, namespace, name, "Ready").get("message", ""))


def replica_changes(cluster: Cluster, namespace: str, name: str, seconds: float) -> list[int]:
    """Every distinct spec.replicas of the Deployment seen while watching it for ``seconds``."""
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        n = replicas(cluster, namespace, name)
        if not seen or seen[-1] != n:
            seen.append(n)
        time.sleep(0.2)
    return seen


def test_a_second_scaledapp_and_an_hpa_on_one_target_yield_without_flapping(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    metric_server.value = 20  # the owner wants 2
    apply(cluster, namespace, scaledapp("owner", metric_server.url))
    wait_replicas(cluster, namespace, "owner", 2)

    # A newcomer on the same Deployment whose metric would want 4 (target 5 per replica).
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "owner"}
    newcomer = scaledapp("newcomer", metric_server.url, template=None, scaleTargetRef=ref)
    newcomer["spec"]["metrics"][0]["target"]["value"] = 5
    apply(cluster, namespace, newcomer)
    wait_for(
        lambda: condition(cluster, namespace, "newcomer", "Ready").get("reason") == "Conflict",
        what="the newcomer Ready=False Conflict",
    )
    ready = condition(cluster, namespace, "newcomer", "Ready")
    assert ready["status"] == "False" and "older ScaledApp owner" in ready["message"], ready
    assert condition(cluster, namespace, "owner", "Ready")["status"] == "True"
    changes = replica_changes(cluster, namespace, "owner", 6)
    assert changes == [2], f"the newcomer must not move the owner's replicas: {changes}"
    assert len(events(cluster, namespace, "Conflict")) == 1

    # A real HPA on the same Deployment: the owner yields to it too, and writes nothing more.
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "owner-hpa"},
        "spec": {
            "scaleTargetRef": ref,
            "minReplicas": 2,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                }
            ],
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(hpa))
    wait_for(
        lambda: (
            "HorizontalPodAutoscaler owner-hpa"
            in condition(cluster, namespace, "owner", "Ready").get("message", "")
        ),
        what="the owner yields to the HPA",
    )
    metric_server.value = 80  # the owner alone would now scale to 8
    time.sleep(4)
    assert replicas(cluster, namespace, "owner") <= 3, "only the HPA (max 3) may set the count"

    # Both others go away: the conflicts clear by themselves and the owner acts again.
    cluster.kubectl("delete", "-n", namespace, "hpa", "owner-hpa")
    cluster.kubectl("delete", "-n", namespace, "scaledapp", "newcomer")
    wait_for(
        lambda: condition(cluster, namespace, "owner", "Ready").get("status") == "True",
        timeout=60,
        what="the owner Ready again",
    )
    wait_replicas(cluster, namespace, "owner", 8, timeout=60)
    assert get(cluster, namespace, "scaledapp", "owner")["status"]["desiredReplicas"] == 8
