"""Failures users meet, shown where kubectl looks: a Deployment whose Pods cannot be created
(here a quota that allows no Pods; Pod Security admission and a missing ServiceAccount look the
same) makes its Greeter and its ScaledApp Ready=False with the Deployment's own reason, once."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kopf.testing import KopfRunner

from tests.conftest import Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

NO_PODS = {
    "apiVersion": "v1",
    "kind": "ResourceQuota",
    "metadata": {"name": "no-pods"},
    "spec": {"hard": {"pods": "0"}},
}


GREETER = {
    "apiVersion": "kopfscale.dev/v1",
    "kind": "Greeter",
    "metadata": {"name": "hello"},
    "spec": {"message": "hi"},
}
ALL_DAY = {"timezone": "UTC", "start": "0 0 * * *", "end": "59 23 * * *", "desiredReplicas": 2}


def cron_app(name: str, **spec: Any) -> dict[str, Any]:
    """A ScaledApp whose cron floor keeps 2 replicas all day (no metric server needed)."""
    body: dict[str, Any] = {
        "template": {"spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}},
        "maxReplicas": 3,
        "pollingInterval": 1,
        "metrics": [{"name": "floor", "type": "cron", "cron": ALL_DAY}],
    }
    body.update(spec)
    return {"apiVersion": "kopfscale.dev/v1", "kind": "ScaledApp", "metadata": {"name": name}, "spec": body}


def create(cluster: Cluster, namespace: str, *objs: dict[str, Any]) -> None:
    for obj in objs:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


def ready(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    body = json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return dict(condition)
    return {}


def events_of(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return list(json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"])


def warnings(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "--field-selector",
        f"type=Warning,involvedObject.name={name}",
        "-o",
        "json",
    ).stdout
    return list(json.loads(out)["items"])


def test_pods_that_cannot_be_created_make_the_owner_not_ready(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(NO_PODS))
    create(cluster, namespace, GREETER, cron_app("app"))

    for kind, name in (("greeter", "hello"), ("scaledapp", "app")):
        wait_for(
            lambda kind=kind, name=name: (
                ready(cluster, namespace, kind, name).get("reason") == "FailedCreate"
            ),  # type: ignore[misc]
            timeout=90,
            what=f"{kind}/{name} Ready=False FailedCreate",
        )
        condition = ready(cluster, namespace, kind, name)
        assert condition["status"] == "False" and "exceeded quota" in condition["message"], condition
        failed = [e for e in warnings(cluster, namespace, name) if e["reason"] == "FailedCreate"]
        assert len(failed) == 1, failed  # one event for the failure, not one per pass or round

    # The quota goes away: the Pods are created and both are Ready again, by themselves.
    cluster.kubectl("delete", "-n", namespace, "resourcequota", "no-pods")
    for kind, name in (("greeter", "hello"), ("scaledapp", "app")):
        wait_for(
            lambda kind=kind, name=name: ready(cluster, namespace, kind, name).get("status") == "True",  # type: ignore[misc]
            timeout=120,
            what=f"{kind}/{name} Ready again",
        )


def test_status_written_by_someone_else_is_put_back(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    create(cluster, namespace, GREETER, cron_app("app"))
    for kind, name in (("greeter", "hello"), ("scaledapp", "app")):
        wait_for(
            lambda kind=kind, name=name: ready(cluster, namespace, kind, name).get("status") == "True",  # type: ignore[misc]
            timeout=60,
            what=f"{kind}/{name} Ready",
        )

    def status(kind: str, name: str) -> dict[str, Any]:
        body = json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)
        return dict(body.get("status") or {})

    lie = {"status": {"replicas": 42, "readyReplicas": 42, "url": "http://elsewhere.example/"}}
    cluster.kubectl(
        "patch",
        "greeter",
        "hello",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(lie),
    )
    wait_for(
        lambda: status("greeter", "hello").get("readyReplicas") == 1,
        timeout=20,
        what="the Greeter's status put back",
    )
    assert status("greeter", "hello")["url"].startswith("http://hello.")

    lie = {"status": {"desiredReplicas": 99, "target": "Deployment/elsewhere"}}
    cluster.kubectl(
        "patch",
        "scaledapp",
        "app",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(lie),
    )
    wait_for(
        lambda: status("scaledapp", "app").get("desiredReplicas") == 2,
        timeout=20,
        what="the ScaledApp's status put back",
    )
    assert status("scaledapp", "app")["target"] == "Deployment/app"


def test_switching_from_template_to_scale_target_ref_leaves_no_orphan(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    def deployment(name: str) -> dict[str, Any] | None:
        result = cluster.kubectl("get", "deployment", name, "-n", namespace, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None

    def replace(obj: dict[str, Any]) -> None:
        cluster.kubectl("replace", "-n", namespace, "-f", "-", input=json.dumps(obj))

    pod = {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": [{"name": "a", "image": "x"}]}}
    other = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "other"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}}, "template": pod},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(other))
    for name in ("moves", "stays"):
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(cron_app(name)))
        wait_for(lambda name=name: deployment(name) is not None, timeout=60, what=f"Deployment/{name}")  # type: ignore[misc]
    time.sleep(2)  # the create handler and the first rounds have all run
    created = [e for e in events_of(cluster, namespace) if e["reason"] == "DeploymentCreated"]
    assert sorted(e["involvedObject"]["name"] for e in created) == ["moves", "stays"], "one per creation"

    # To another workload: the template's Deployment is deleted, the other one is scaled.
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "other"}
    replace(cron_app("moves", template=None, scaleTargetRef=ref))
    wait_for(lambda: deployment("moves") is None, timeout=60, what="the old Deployment deleted")
    wait_for(
        lambda: (deployment("other") or {})["spec"]["replicas"] == 2, timeout=60, what="the new target scaled"
    )

    # To the same Deployment by name: it is released (no longer owned, not garbage) and still scaled.
    ref = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "stays"}
    replace(cron_app("stays", template=None, scaleTargetRef=ref))
    wait_for(
        lambda: (
            not (deployment("stays") or {"metadata": {"ownerReferences": [1]}})["metadata"].get(
                "ownerReferences"
            )
        ),
        timeout=60,
        what="Deployment/stays released",
    )
    reasons = [
        e["reason"]
        for e in json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    ]
    assert reasons.count("DeploymentDeleted") == 1 and reasons.count("DeploymentReleased") == 1, reasons
    cluster.kubectl("delete", "-n", namespace, "scaledapp", "stays")
    time.sleep(3)
    assert deployment("stays") is not None, (
        "a released Deployment is not garbage-collected with the ScaledApp"
    )
