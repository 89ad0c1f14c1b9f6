"""The ScaledApp controller against the real control plane, with metrics served by a local HTTP
server whose value each test sets (the ``http`` source reads it like any JSON endpoint)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kopf.testing import KopfRunner

from tests.conftest import Cluster
from tests.helpers import JsonServer, wait_for

pytestmark = pytest.mark.integration


class MetricServer(JsonServer):
    """Serves ``{"load": <value>}``; ``fail = True`` answers 500, the test sets both at will."""

    def __init__(self) -> None:
        self.value: float = 0.0
        self.fail = False
        super().__init__(self.answer)

    def answer(self, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.fail:
            return 500, b"backend down"
        return 200, json.dumps({"load": self.value}).encode()


@pytest.fixture()
def metric_server() -> Iterator[MetricServer]:
    server = MetricServer()
    yield server
    server.close()


def scaledapp(name: str, url: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "ScaledApp",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            },
            "minReplicas": 1,
            "maxReplicas": 10,
            "pollingInterval": 1,
            "metrics": [
                {
                    "name": "load",
                    "type": "http",
                    "http": {"url": url, "valueLocation": "$.load", "timeout": 1},
                    "target": {"type": "AverageValue", "value": 10},
                }
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
        },
    }
    for key, value in spec.items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = value
    return body


def apply(cluster: Cluster, namespace: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def get(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
    )
    return result


def replicas(cluster: Cluster, namespace: str, name: str, kind: str = "deployment") -> int:
    return int(get(cluster, namespace, kind, name)["spec"].get("replicas", 0))


def condition(cluster: Cluster, namespace: str, name: str, type_: str) -> dict[str, Any]:
    for c in get(cluster, namespace, "scaledapp", name).get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return {}


def events(cluster: Cluster, namespace: str, reason: str) -> list[str]:
    out = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"reason={reason}", "-o", "json"
    ).stdout
    return [e.get("message", "") for e in json.loads(out)["items"]]


def wait_replicas(
    cluster: Cluster, namespace: str, name: str, n: int, *, timeout: float = 30, kind: str = "deployment"
) -> float:
    started = time.monotonic()
    wait_for(
        lambda: replicas(cluster, namespace, name, kind) == n,
        timeout=timeout,
        interval=0.1,
        what=f"{kind}/{name} at {n} replicas",
    )
    return time.monotonic() - started


def test_scales_up_within_one_interval_and_down_after_the_window(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    metric_server.value = 5
    apply(
        cluster,
        namespace,
        scaledapp(
            "web",
            metric_server.url,
            pollingInterval=2,
            behavior={"scaleDown": {"stabilizationWindowSeconds": 6}},
        ),
    )
    wait_replicas(cluster, namespace, "web", 1)
    wait_for(lambda: condition(cluster, namespace, "web", "Ready").get("status") == "True", what="Ready")
    status = get(cluster, namespace, "scaledapp", "web")["status"]
    assert status["target"] == "Deployment/web"
    assert status["metrics"][0]["value"] == 5

    metric_server.value = 38  # ceil(38 / 10) = 4
    reaction = wait_replicas(cluster, namespace, "web", 4, timeout=10)
    print(f"scale-up reaction time: {reaction:.2f}s (pollingInterval 2s)")
    assert reaction <= 2 + 1.5, f"scaled up {reaction:.1f}s after the change; the polling interval is 2s"
    wait_for(
        lambda: any("load" in m and "1 -> 4" in m for m in events(cluster, namespace, "ScaledUp")),
        what="a ScaledUp event naming the metric",
    )
    decision = get(cluster, namespace, "scaledapp", "web")["status"]["lastDecision"]
    assert decision["drivingMetric"] == "load" and decision["to"] == 4

    metric_server.value = 12  # wants 2, but the 6 s scale-down window remembers 4
    changed_at = time.monotonic()
    time.sleep(3)
    assert replicas(cluster, namespace, "web") == 4, "scaled down inside the stabilization window"
    wait_replicas(cluster, namespace, "web", 2, timeout=15)
    waited = time.monotonic() - changed_at
    print(f"scale-down after {waited:.2f}s (window 6s)")
    assert waited >= 6 - 2 - 0.5  # the window counts from the last poll that still saw 4
    status = get(cluster, namespace, "scaledapp", "web")["status"]
    assert (status["replicas"], status["desiredReplicas"]) == (2, 2)
    assert (
        status["observedGeneration"] == get(cluster, namespace, "scaledapp", "web")["metadata"]["generation"]
    )


def test_activation_scales_to_zero_and_back(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    metric_server.value = 20
    sa = scaledapp("zero", metric_server.url, minReplicas=0, cooldownPeriod=5)
    sa["spec"]["metrics"][0]["activationThreshold"] = 5
    apply(cluster, namespace, sa)
    wait_replicas(cluster, namespace, "zero", 2)
    metric_server.value = 4  # at or below the threshold: inactive
    wait_replicas(cluster, namespace, "zero", 1)  # N -> 1 does not wait for the cooldown
    assert condition(cluster, namespace, "zero", "Active")["status"] == "False"
    assert condition(cluster, namespace, "zero", "ScalingLimited")["reason"] == "CooldownPending"
    wait_replicas(cluster, namespace, "zero", 0, timeout=15)
    metric_server.value = 6  # active again: ceil(6 / 10) = 1
    reaction = wait_replicas(cluster, namespace, "zero", 1, timeout=10)
    print(f"0 -> 1 reaction time: {reaction:.2f}s (pollingInterval 1s)")
    assert condition(cluster, namespace, "zero", "Active")["status"] == "True"


def test_bounds_paused_and_observe(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    metric_server.value = 1000
    apply(cluster, namespace, scaledapp("bounded", metric_server.url, minReplicas=2, maxReplicas=3))
    wait_replicas(cluster, namespace, "bounded", 3)
    wait_for(
        lambda: condition(cluster, namespace, "bounded", "ScalingLimited").get("reason") == "TooManyReplicas",
        what="ScalingLimited=TooManyReplicas",
    )
    metric_server.value = 0
    wait_replicas(cluster, namespace, "bounded", 2)
    time.sleep(2)
    assert replicas(cluster, namespace, "bounded") == 2  # never below min

    cluster.kubectl(
        "patch", "scaledapp", "bounded", "-n", namespace, "--type=merge", "-p", '{"spec": {"paused": true}}'
    )
    wait_for(
        lambda: condition(cluster, namespace, "bounded", "Paused").get("status") == "True", what="Paused"
    )
    metric_server.value = 1000
    time.sleep(3)
    assert replicas(cluster, namespace, "bounded") == 2, "scaled while paused"

    cluster.kubectl(
        "patch",
        "scaledapp",
        "bounded",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec": {"paused": false, "mode": "Observe"}}',
    )
    wait_for(
        lambda: get(cluster, namespace, "scaledapp", "bounded")["status"].get("desiredReplicas") == 3,
        what="the observed desired count in status",
    )
    wait_for(lambda: events(cluster, namespace, "WouldScaleUp"), what="a WouldScaleUp event")
    time.sleep(2)
    assert replicas(cluster, namespace, "bounded") == 2, "Observe mode changed the workload"
    assert condition(cluster, namespace, "bounded", "Paused")["status"] == "False"

    cluster.kubectl(
        "patch", "scaledapp", "bounded", "-n", namespace, "--type=merge", "-p", '{"spec": {"mode": "Auto"}}'
    )
    wait_replicas(cluster, namespace, "bounded", 3)


def test_fallback_after_the_threshold_and_recovery(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    metric_server.value = 20
    apply(
        cluster,
        namespace,
        scaledapp("fb", metric_server.url, fallback={"failureThreshold": 3, "replicas": 5}),
    )
    wait_replicas(cluster, namespace, "fb", 2)
    metric_server.fail = True
    wait_for(
        lambda: (
            "HTTP 500"
            in (get(cluster, namespace, "scaledapp", "fb")["status"]["metrics"][0].get("error") or "")
        ),
        what="the source's error in status",
    )
    assert replicas(cluster, namespace, "fb") == 2  # held, never scaled down for missing data
    wait_replicas(cluster, namespace, "fb", 5)
    assert condition(cluster, namespace, "fb", "Fallback")["status"] == "True"
    assert any("load" in m for m in events(cluster, namespace, "MetricFailed"))
    metric_server.fail = False
    wait_replicas(cluster, namespace, "fb", 2)
    wait_for(
        lambda: condition(cluster, namespace, "fb", "Fallback").get("status") == "False",
        what="Fallback=False",
    )


def test_missing_target_then_created_and_deletion_leaves_it_alone(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    metric_server.value = 30
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "existing"}
    apply(cluster, namespace, scaledapp("byref", metric_server.url, template=None, scaleTargetRef=ref))
    wait_for(
        lambda: condition(cluster, namespace, "byref", "Ready").get("reason") == "TargetNotFound",
        what="Ready=False TargetNotFound",
    )
    assert condition(cluster, namespace, "byref", "Ready")["status"] == "False"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "existing"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "existing"}},
            "template": {
                "metadata": {"labels": {"app": "existing"}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            },
        },
    }
    apply(cluster, namespace, deployment)
    wait_replicas(cluster, namespace, "existing", 3, timeout=60)  # within the retry backoff
    assert condition(cluster, namespace, "byref", "Ready")["status"] == "True"

    cluster.kubectl("delete", "scaledapp", "byref", "-n", namespace)
    time.sleep(2)
    assert replicas(cluster, namespace, "existing") == 3  # the target is not owned: left alone


def test_no_scale_subresource_is_reported(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    ref = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "name": "whatever"}
    apply(cluster, namespace, scaledapp("noscale", metric_server.url, template=None, scaleTargetRef=ref))
    wait_for(
        lambda: condition(cluster, namespace, "noscale", "Ready").get("reason") == "NoScaleSubresource",
        what="Ready=False NoScaleSubresource",
    )
    assert "no /scale subresource" in condition(cluster, namespace, "noscale", "Ready")["message"]


def test_deleting_the_scaledapp_garbage_collects_its_deployment(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    metric_server.value = 10
    apply(cluster, namespace, scaledapp("owned", metric_server.url))
    wait_replicas(cluster, namespace, "owned", 1)
    owners = get(cluster, namespace, "deployment", "owned")["metadata"]["ownerReferences"]
    assert owners[0]["kind"] == "ScaledApp" and owners[0]["controller"] is True
    cluster.kubectl("delete", "scaledapp", "owned", "-n", namespace)
    wait_for(
        lambda: cluster.kubectl("get", "deployment", "owned", "-n", namespace, check=False).returncode != 0,
        timeout=60,
        what="the owned Deployment to be garbage-collected",
    )


def test_scales_a_greeter_through_scale_target_ref(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    greeter = {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "Greeter",
        "metadata": {"name": "hello"},
        "spec": {"message": "Hello", "replicas": 1},
    }
    apply(cluster, namespace, greeter)
    metric_server.value = 25
    ref = {"apiVersion": "kopfscale.dev/v1", "kind": "Greeter", "name": "hello"}
    apply(
        cluster, namespace, scaledapp("greeter-scaler", metric_server.url, template=None, scaleTargetRef=ref)
    )
    wait_replicas(cluster, namespace, "hello", 3, kind="greeter")
    assert get(cluster, namespace, "scaledapp", "greeter-scaler")["status"]["target"] == "Greeter/hello"


def test_a_deleted_owned_deployment_is_recreated(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    metric_server.value = 30  # 3 replicas
    apply(cluster, namespace, scaledapp("web", metric_server.url))
    wait_replicas(cluster, namespace, "web", 3)
    first_uid = get(cluster, namespace, "deployment", "web")["metadata"]["uid"]

    cluster.kubectl("delete", "deployment", "web", "-n", namespace)
    wait_for(
        lambda: get(cluster, namespace, "deployment", "web")["metadata"]["uid"] != first_uid,
        timeout=15,
        what="the owned Deployment to be recreated",
    )
    wait_replicas(cluster, namespace, "web", 3)
    owners = get(cluster, namespace, "deployment", "web")["metadata"]["ownerReferences"]
    assert [o["kind"] for o in owners] == ["ScaledApp"]


def test_a_foreign_deployment_of_the_same_name_is_never_scaled(
    cluster: Cluster, namespace: str, operator: KopfRunner, metric_server: MetricServer
) -> None:
    cluster.kubectl(
        "create", "deployment", "web", "-n", namespace, "--image=registry.invalid/x:1", "--replicas=2"
    )
    metric_server.value = 80  # would be 8 replicas
    apply(cluster, namespace, scaledapp("web", metric_server.url))

    ready = wait_for(
        lambda: (
            condition(cluster, namespace, "web", "Ready").get("status") == "False"
            and condition(cluster, namespace, "web", "Ready")
        ),
        timeout=20,
        what="Ready=False on the ScaledApp",
    )
    assert ready["reason"] == "DeploymentConflict", ready
    time.sleep(3)  # several polling intervals
    foreign = get(cluster, namespace, "deployment", "web")
    assert foreign["spec"]["replicas"] == 2
    assert "ownerReferences" not in foreign["metadata"]
