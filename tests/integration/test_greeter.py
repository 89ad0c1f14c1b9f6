"""The Greeter controller against the real local control plane (kwok makes the Pods ready).

Every test runs the operator in-process (kopf's KopfRunner) on its own namespace and checks
only what a user could see with kubectl: children, owner references, labels, status, events.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pykube
import pytest
from kopf.testing import KopfRunner
from kubernetes.utils.quantity import parse_quantity

from tests.conftest import Cluster, OperatorFactory
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

SELECTOR = "app.kubernetes.io/managed-by=kopfscale,app.kubernetes.io/component=greeter"
Body = dict[str, Any]


class Greeter(pykube.objects.NamespacedAPIObject):
    version = "kopfscale.dev/v1"
    endpoint = "greeters"
    kind = "Greeter"


KINDS: dict[str, type[pykube.objects.NamespacedAPIObject]] = {
    "Greeter": Greeter,
    "Deployment": pykube.Deployment,
    "Service": pykube.Service,
}


def fetch(api: pykube.HTTPClient, kind: str, namespace: str, name: str) -> Body | None:
    found = KINDS[kind].objects(api, namespace=namespace).get_or_none(name=name)
    return dict(found.obj) if found is not None else None


def must(api: pykube.HTTPClient, kind: str, namespace: str, name: str) -> Body:
    found = fetch(api, kind, namespace, name)
    assert found is not None, f"{kind} {namespace}/{name} is missing"
    return found


def greeter(name: str = "hello", **spec: Any) -> Body:
    return {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "Greeter",
        "metadata": {"name": name},
        "spec": {"message": "Hello", "replicas": 2, **spec},
    }


def apply(cluster: Cluster, namespace: str, body: Body) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def condition(body: Body | None, type_: str = "Ready") -> Body:
    for cond in ((body or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def container(deployment: Body) -> Body:
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def message_of(deployment: Body) -> str:
    return next(e["value"] for e in container(deployment)["env"] if e["name"] == "GREETER_MESSAGE")


def wait_ready(api: pykube.HTTPClient, namespace: str, name: str, replicas: int, timeout: float = 60) -> Body:
    def ready() -> Body | None:
        body = fetch(api, "Greeter", namespace, name)
        status = (body or {}).get("status") or {}
        ok = (
            condition(body).get("status") == "True"
            and status.get("readyReplicas") == replicas
            and status.get("observedGeneration") == (body or {})["metadata"]["generation"]
        )
        return body if ok else None

    return wait_for(ready, timeout=timeout, what=f"Greeter {name} Ready with {replicas} ready replicas")


def events(cluster: Cluster, namespace: str, name: str, kind: str = "Greeter") -> list[Body]:
    out = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "-o",
        "json",
        "--field-selector",
        f"involvedObject.kind={kind},involvedObject.name={name}",
    )
    return list(json.loads(out.stdout)["items"])


def reasons(cluster: Cluster, namespace: str, name: str) -> set[str]:
    return {e["reason"] for e in events(cluster, namespace, name)}


def report(line: str) -> None:
    """Timings for humans (pytest -s); KopfRunner swaps sys.stdout while the operator runs."""
    print(line, file=sys.__stdout__, flush=True)


def timed(predicate: Callable[[], Any], what: str, timeout: float = 30) -> float:
    start = time.monotonic()
    wait_for(predicate, timeout=timeout, interval=0.05, what=what)
    return time.monotonic() - start


def test_create_makes_owned_labelled_children_and_reports_ready(
    cluster: Cluster, api: pykube.HTTPClient, namespace: str, operator: KopfRunner
) -> None:
    start = time.monotonic()
    apply(cluster, namespace, greeter(message="Grüß dich 👋"))
    to_deployment = timed(lambda: fetch(api, "Deployment", namespace, "hello"), "the Deployment")
    wait_ready(api, namespace, "hello", 2)
    to_ready = time.monotonic() - start
    report(f"\ncreate→Deployment {to_deployment:.2f}s, create→Ready {to_ready:.2f}s")

    owner = must(api, "Greeter", namespace, "hello")
    for kind in ("Deployment", "Service"):
        child = must(api, kind, namespace, "hello")
        assert child["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "kopfscale.dev/v1",
                "kind": "Greeter",
                "name": "hello",
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        labels = child["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "greeter"
        assert labels["app.kubernetes.io/instance"] == "hello"
        assert labels["app.kubernetes.io/managed-by"] == "kopfscale"
        assert labels["app.kubernetes.io/component"] == "greeter"
        assert labels["app.kubernetes.io/part-of"] == "kopfscale"
        assert not child["metadata"].get("finalizers")
    assert not owner["metadata"].get("finalizers")

    deployment = must(api, "Deployment", namespace, "hello")
    assert message_of(deployment) == "Grüß dich 👋"
    assert container(deployment)["command"] == ["kopfscale", "greet"]
    assert container(deployment)["readinessProbe"]["httpGet"]["path"] == "/healthz"
    service = must(api, "Service", namespace, "hello")
    assert service["spec"]["ports"][0]["port"] == 8080
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    status = owner["status"]
    assert status["replicas"] == 2 and status["readyReplicas"] == 2
    assert status["url"] == f"http://hello.{namespace}.svc.cluster.local:8080"
    assert status["selector"] == "app.kubernetes.io/instance=hello,app.kubernetes.io/name=greeter"
    assert condition(owner)["reason"] == "AllReplicasReady"
    assert condition(owner, "Reconciled")["status"] == "True"
    assert "status.kopf" not in json.dumps(owner) and "kopf" not in status
    assert {"Created"} <= reasons(cluster, namespace, "hello")

    table = cluster.kubectl("get", "greeters", "-n", namespace).stdout
    assert "PODS-READY" in table and "Grüß dich" in table and "True" in table


def test_message_update_rolls_every_pod(
    cluster: Cluster, api: pykube.HTTPClient, namespace: str, operator: KopfRunner
) -> None:
    apply(cluster, namespace, greeter(message="one"))
    wait_ready(api, namespace, "hello", 2)
    before = must(api, "Deployment", namespace, "hello")

    cluster.kubectl(
        "patch",
        "greeter",
        "hello",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"message": "two"}}),
    )
    wait_for(lambda: message_of(must(api, "Deployment", namespace, "hello")) == "two", what="new message")
    after = must(api, "Deployment", namespace, "hello")
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    wait_ready(api, namespace, "hello", 2)

    def pods_serve_two() -> bool:
        pods = [
            p.obj
            for p in pykube.Pod.objects(api, namespace=namespace).filter(
                selector={"app.kubernetes.io/instance": "hello"}
            )
            if not p.obj["metadata"].get("deletionTimestamp")
        ]
        envs = [{e["name"]: e.get("value") for e in p["spec"]["containers"][0]["env"]} for p in pods]
        return len(pods) == 2 and all(env["GREETER_MESSAGE"] == "two" for env in envs)

    wait_for(pods_serve_two, timeout=60, what="every Pod on the new message")
    assert "Updated" in reasons(cluster, namespace, "hello")


def test_kubectl_scale_drives_replicas_and_status(
    cluster: Cluster, api: pykube.HTTPClient, namespace: str, operator: KopfRunner
) -> None:
    apply(cluster, namespace, greeter(replicas=1))
    wait_ready(api, namespace, "hello", 1)
    cluster.kubectl("scale", "greeter/hello", "-n", namespace, "--replicas=3")
    wait_for(lambda: must(api, "Deployment", namespace, "hello")["spec"]["replicas"] == 3, what="scale up")
    body = wait_ready(api, namespace, "hello", 3)
    assert body["status"]["replicas"] == 3
    scale = json.loads(
        cluster.kubectl(
            "get", "--raw", f"/apis/kopfscale.dev/v1/namespaces/{namespace}/greeters/hello/scale"
        ).stdout
    )
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == "app.kubernetes.io/instance=hello,app.kubernetes.io/name=greeter"

    cluster.kubectl("scale", "greeter/hello", "-n", namespace, "--replicas=0")
    body = wait_ready(api, namespace, "hello", 0)
    assert must(api, "Deployment", namespace, "hello")["spec"]["replicas"] == 0
    assert body["status"].get("replicas", 0) == 0


@pytest.mark.parametrize(
    ("kind", "cascade"),
    [("Deployment", "background"), ("Deployment", "foreground"), ("Service", "background")],
)
def test_drift_is_restored_within_seconds(
    cluster: Cluster, api: pykube.HTTPClient, namespace: str, operator: KopfRunner, kind: str, cascade: str
) -> None:
    apply(cluster, namespace, greeter(replicas=1, serviceType="NodePort"))
    wait_ready(api, namespace, "hello", 1)
    resource = "deployment" if kind == "Deployment" else "service"
    original = must(api, kind, namespace, "hello")

    if kind == "Deployment":
        edit = {
            "spec": {
                "replicas": 4,
                "template": {
                    "spec": {"containers": [{"name": "greeter", "image": "evil.example.com/other:1"}]}
                },
            }
        }

        def restored() -> bool:
            live = must(api, kind, namespace, "hello")
            return bool(
                live["spec"]["replicas"] == 1 and container(live)["image"] == container(original)["image"]
            )
    else:
        edit = {"spec": {"ports": [{"name": "http", "port": 9999, "targetPort": "http", "protocol": "TCP"}]}}

        def restored() -> bool:
            return bool(must(api, kind, namespace, "hello")["spec"]["ports"][0]["port"] == 8080)

    cluster.kubectl("patch", resource, "hello", "-n", namespace, "--type=merge", "-p", json.dumps(edit))
    took = timed(restored, f"the edited {kind} restored", timeout=10)
    report(f"\n{kind} edit restored in {took:.2f}s")

    uid = original["metadata"]["uid"]
    cluster.kubectl("delete", resource, "hello", "-n", namespace, f"--cascade={cascade}", "--wait=false")
    took = timed(
        lambda: (
            (fetch(api, kind, namespace, "hello") or {"metadata": {"uid": uid}})["metadata"]["uid"] != uid
        ),
        f"the deleted {kind} recreated",
        timeout=10,
    )
    report(f"{kind} deletion ({cascade}) restored in {took:.2f}s")
    live = must(api, kind, namespace, "hello")
    assert live["metadata"]["ownerReferences"][0]["name"] == "hello"
    wait_ready(api, namespace, "hello", 1)
    drift_events = [e for e in events(cluster, namespace, "hello") if e["reason"] == "DriftRestored"]
    assert drift_events and all(e["type"] == "Normal" for e in drift_events)
    assert kind in " ".join(e["message"] for e in drift_events)


def test_delete_garbage_collects_the_children(
    cluster: Cluster, api: pykube.HTTPClient, namespace: str, operator: KopfRunner
) -> None:
    apply(cluster, namespace, greeter(replicas=1))
    wait_ready(api, namespace, "hello", 1)
    cluster.kubectl("delete", "greeter", "hello", "-n", namespace, "--wait=true", "--timeout=30s")
    wait_for(
        lambda: (
            fetch(api, "Deployment", namespace, "hello") is None
            and fetch(api, "Service", namespace, "hello") is None
        ),
        timeout=60,
        what="garbage collection",
    )
    time.sleep(2)  # no resurrection by the drift handlers
    assert fetch(api, "Deployment", namespace, "hello") is None
    assert fetch(api, "Service", namespace, "hello") is None


def footprint(api: pykube.HTTPClient, namespace: str, name: str) -> dict[str, Any]:
    """What a write by kopfscale would change: the children's resourceVersions, the status.

    (The Greeter's own resourceVersion is not included: kopf keeps its handler bookkeeping in
    the Greeter's annotations, which is kopf's write, not the controller's.)
    """
    return {
        "Deployment": must(api, "Deployment", namespace, name)["metadata"]["resourceVersion"],
        "Service": must(api, "Service", namespace, name)["metadata"]["resourceVersion"],
        "status": must(api, "Greeter", namespace, name)["status"],
    }


def count_children(api: pykube.HTTPClient, namespace: str) -> tuple[int, int]:
    selector = dict(pair.split("=") for pair in SELECTOR.split(","))
    return (
        len(list(pykube.Deployment.objects(api, namespace=namespace).filter(selector=selector))),
        len(list(pykube.Service.objects(api, namespace=namespace).filter(selector=selector))),
    )


def test_restart_resumes_without_duplicates_or_writes(
    cluster: Cluster, api: pykube.HTTPClient, namespace: str, operator_factory: OperatorFactory
) -> None:
    with operator_factory():
        apply(cluster, namespace, greeter("steady", replicas=1))
        apply(cluster, namespace, greeter("changed", replicas=1))
        wait_ready(api, namespace, "steady", 1)
        wait_ready(api, namespace, "changed", 1)
    steady_before = footprint(api, namespace, "steady")

    # While the operator is down: a change, a deleted child, a brand-new Greeter.
    cluster.kubectl(
        "patch",
        "greeter",
        "changed",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"message": "changed while down", "replicas": 2}}),
    )
    cluster.kubectl("delete", "service", "changed", "-n", namespace, "--wait=true")
    apply(cluster, namespace, greeter("newcomer", replicas=1))

    with operator_factory() as runner:
        wait_ready(api, namespace, "changed", 2)
        wait_ready(api, namespace, "newcomer", 1)
        assert message_of(must(api, "Deployment", namespace, "changed")) == "changed while down"
        assert fetch(api, "Service", namespace, "changed") is not None
        time.sleep(3)  # let every startup event (children listing, resume) be processed
    # (kopf's runner output is readable once it has stopped.)
    # The restarted operator did look at the matching Greeter (its pass ran, and wrote nothing).
    assert f"[{namespace}/steady] Handler 'greeter_changed' succeeded" in runner.output
    assert footprint(api, namespace, "steady") == steady_before, "a matching Greeter got writes"
    assert count_children(api, namespace) == (3, 3)


def test_foreign_child_is_a_condition_and_a_warning_never_overwritten(
    cluster: Cluster, api: pykube.HTTPClient, namespace: str, operator: KopfRunner
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hello", "labels": {"owner": "someone"}},
        "spec": {"ports": [{"port": 1234}], "selector": {"app": "other"}},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(foreign))
    before = must(api, "Service", namespace, "hello")
    apply(cluster, namespace, greeter(replicas=1))

    def conflict_reported() -> Body | None:
        body = fetch(api, "Greeter", namespace, "hello")
        return body if condition(body).get("reason") == "ChildConflict" else None

    body = wait_for(conflict_reported, what="Ready=False ChildConflict")
    assert condition(body)["status"] == "False" and "not ours" in condition(body)["message"]
    warnings = [e for e in events(cluster, namespace, "hello") if e["reason"] == "ChildConflict"]
    assert warnings and warnings[0]["type"] == "Warning"
    time.sleep(3)  # retries with backoff happen meanwhile; none may touch the Service
    assert (
        must(api, "Service", namespace, "hello")["metadata"]["resourceVersion"]
        == before["metadata"]["resourceVersion"]
    )

    cluster.kubectl("delete", "service", "hello", "-n", namespace, "--wait=true")
    wait_ready(api, namespace, "hello", 1, timeout=90)
    assert (
        must(api, "Service", namespace, "hello")["metadata"]["labels"]["app.kubernetes.io/managed-by"]
        == "kopfscale"
    )


def assert_quiet(api: pykube.HTTPClient, namespace: str, name: str, seconds: float = 2.0) -> None:
    """Once converged, nothing more is written: no write loop between us and the apiserver."""
    before = footprint(api, namespace, name)
    time.sleep(seconds)
    assert footprint(api, namespace, name) == before


def test_spec_changes_converge_without_write_loops(
    cluster: Cluster, api: pykube.HTTPClient, namespace: str, operator: KopfRunner
) -> None:
    # Quantities the apiserver canonicalises (0.5 → 500m, bytes → 64Mi) must not look like drift.
    apply(cluster, namespace, greeter(replicas=1, resources={"limits": {"cpu": "0.5", "memory": 67108864}}))
    wait_ready(api, namespace, "hello", 1)
    limits = container(must(api, "Deployment", namespace, "hello"))["resources"]["limits"]
    assert limits["cpu"] == "500m" and parse_quantity(limits["memory"]) == 64 * 2**20
    assert_quiet(api, namespace, "hello")

    def service_is(type_: str, port: int) -> bool:
        spec = must(api, "Service", namespace, "hello")["spec"]
        return bool(spec["type"] == type_ and spec["ports"][0]["port"] == port)

    for type_, port in (("NodePort", 80), ("LoadBalancer", 8081), ("ClusterIP", 8080)):
        cluster.kubectl(
            "patch",
            "greeter",
            "hello",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"serviceType": type_, "port": port}}),
        )
        wait_for(lambda t=type_, p=port: service_is(t, p), what=f"a {type_} Service on port {port}")
        body = wait_ready(api, namespace, "hello", 1)
        assert body["status"]["url"].endswith(f":{port}")
    assert "nodePort" not in must(api, "Service", namespace, "hello")["spec"]["ports"][0]

    cluster.kubectl(
        "patch",
        "greeter",
        "hello",
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps([{"op": "remove", "path": "/spec/resources"}]),
    )
    wait_for(
        lambda: container(must(api, "Deployment", namespace, "hello")).get("resources") == {},
        what="resources removed from the Deployment",
    )
    wait_ready(api, namespace, "hello", 1)
    assert_quiet(api, namespace, "hello")


def test_runs_in_a_namespace_enforcing_the_restricted_pod_security_standard(
    cluster: Cluster, api: pykube.HTTPClient, namespace: str, operator: KopfRunner
) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    apply(cluster, namespace, greeter(replicas=2))
    wait_ready(api, namespace, "hello", 2)
