"""One scheduler for every ScaledApp, on the real control plane: what a user sees of it.

Every ScaledApp here polls every 60 s, so anything that happens within a few seconds happened
because the event woke the round, not because the interval came round: a pause, a deletion, an
HPA on the same target (and its removal), the owned Deployment deleted by someone. And no
ScaledApp carries a finalizer: a ScaledApp is deleted at once, even with no operator running, and
the finalizer an earlier release put on it is taken off.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kopf.testing import KopfRunner

from tests.conftest import Cluster
from tests.helpers import wait_for
from tests.integration.test_scaledapp import (
    MetricServer,
    apply,
    condition,
    get,
    replicas,
    scaledapp,
    wait_replicas,
)

pytestmark = pytest.mark.integration
SLOW = 60  # pollingInterval: a reaction within WITHIN seconds is the wake's, not the interval's
WITHIN = 5.0
OLD_FINALIZER = "kopfscale.dev/finalizer"  # what kopf put on every ScaledApp for its daemon


@pytest.fixture()
def metric_server() -> Iterator[MetricServer]:
    server = MetricServer()
    server.value = 20  # two replicas at target 10
    yield server
    server.close()


def slow(name: str, url: str, **spec: Any) -> dict[str, Any]:
    return scaledapp(name, url, pollingInterval=SLOW, **spec)


def timed(predicate: Any, what: str, timeout: float = WITHIN) -> float:
    started = time.monotonic()
    wait_for(predicate, timeout=timeout, interval=0.1, what=what)
    return time.monotonic() - started


def test_pause_and_resume_take_effect_at_once(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    apply(cluster, namespace, slow("web", metric_server.url))
    wait_replicas(cluster, namespace, "web", 2)
    patch = json.dumps({"spec": {"paused": True}})
    cluster.kubectl("patch", "scaledapp", "web", "-n", namespace, "--type=merge", "-p", patch)
    took = timed(lambda: condition(cluster, namespace, "web", "Paused").get("status") == "True", "Paused")
    print(f"paused {took:.2f} s after the patch (pollingInterval {SLOW} s)")

    metric_server.value = 40  # would be 4 replicas: held while paused
    time.sleep(2)
    assert replicas(cluster, namespace, "web") == 2
    patch = json.dumps({"spec": {"paused": False, "pollingInterval": SLOW + 1}})
    cluster.kubectl("patch", "scaledapp", "web", "-n", namespace, "--type=merge", "-p", patch)
    took = timed(lambda: replicas(cluster, namespace, "web") == 4, "resumed to 4 replicas")
    print(f"resumed and scaled {took:.2f} s after the patch")


def test_no_finalizer_a_deletion_is_immediate_and_stops_the_rounds(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "target"}
    cluster.kubectl("create", "deployment", "target", "-n", namespace, "--image=registry.invalid/t:1")
    apply(cluster, namespace, slow("web", metric_server.url, template=None, scaleTargetRef=ref))
    wait_replicas(cluster, namespace, "target", 2)
    assert not get(cluster, namespace, "scaledapp", "web")["metadata"].get("finalizers")

    cluster.kubectl("delete", "scaledapp", "web", "-n", namespace, "--wait=true", "--timeout=10s")
    metric_server.value = 50  # a round still running would now scale to 5
    cluster.kubectl("scale", "deployment", "target", "-n", namespace, "--replicas=1")
    time.sleep(3)
    assert replicas(cluster, namespace, "target") == 1  # nobody scales it any more


def test_the_finalizer_of_an_earlier_release_is_removed(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    old = slow("web", metric_server.url)
    old["metadata"]["finalizers"] = [OLD_FINALIZER]
    apply(cluster, namespace, old)
    wait_for(
        lambda: (
            OLD_FINALIZER
            not in (get(cluster, namespace, "scaledapp", "web")["metadata"].get("finalizers") or [])
        ),
        timeout=30,
        what="the old finalizer removed",
    )
    cluster.kubectl("delete", "scaledapp", "web", "-n", namespace, "--wait=true", "--timeout=10s")


def test_an_hpa_on_the_target_shows_as_a_conflict_at_once_and_clears_when_it_goes(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    apply(cluster, namespace, slow("web", metric_server.url))
    wait_replicas(cluster, namespace, "web", 2)
    wait_for(lambda: condition(cluster, namespace, "web", "Ready").get("status") == "True", what="Ready")
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "rival"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
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
    apply(cluster, namespace, hpa)
    took = timed(
        lambda: condition(cluster, namespace, "web", "Ready").get("reason") == "Conflict", "Conflict"
    )
    print(f"conflict shown {took:.2f} s after the HPA was created (pollingInterval {SLOW} s)")
    cluster.kubectl("delete", "hpa", "rival", "-n", namespace)
    took = timed(lambda: condition(cluster, namespace, "web", "Ready").get("status") == "True", "Ready again")
    print(f"conflict cleared {took:.2f} s after the HPA was deleted")


def test_an_owned_deployment_deleted_by_someone_is_recreated_at_once(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    apply(cluster, namespace, slow("web", metric_server.url))
    wait_replicas(cluster, namespace, "web", 2)
    uid = get(cluster, namespace, "deployment", "web")["metadata"]["uid"]
    cluster.kubectl("delete", "deployment", "web", "-n", namespace, "--wait=true")

    def recreated() -> bool:
        return bool(get(cluster, namespace, "deployment", "web")["metadata"]["uid"] != uid)

    took = timed(recreated, "the Deployment recreated")
    print(f"Deployment recreated {took:.2f} s after its deletion (pollingInterval {SLOW} s)")
