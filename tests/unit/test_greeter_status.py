"""Status computation: Ready follows the Deployment's rollout; failures and drift show."""

from __future__ import annotations

import datetime
from typing import Any

from kopfscale import conditions
from kopfscale.greeter import manifests as m
from kopfscale.greeter import status as s
from kopfscale.settings import OperatorSettings

SETTINGS = OperatorSettings(greeter_image="example.org/kopfscale:1", cluster_domain="cluster.local")
T0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(minutes=5)


def greeter(replicas: int = 2, generation: int = 3, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "Greeter",
        "metadata": {"name": "hello", "namespace": "ns", "uid": "uid-1", "generation": generation},
        "spec": {"message": "Hello", "replicas": replicas, "port": 8080, "serviceType": "ClusterIP"},
        **({"status": status} if status is not None else {}),
    }


def children(
    body: dict[str, Any], ready: int, updated: int | None = None, total: int | None = None, seen: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    owner = m.Owner.from_body(body)
    spec = m.GreeterSpec.from_spec(body["spec"])
    deployment = m.prune_nones(m.build_deployment(owner, spec, SETTINGS))
    deployment["metadata"]["generation"] = 4
    deployment["status"] = {
        "observedGeneration": 4 if seen else 3,
        "replicas": spec.replicas if total is None else total,
        "updatedReplicas": spec.replicas if updated is None else updated,
        "readyReplicas": ready,
    }
    return deployment, m.prune_nones(m.build_service(owner, spec))


def ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    found = conditions.find_condition(status["conditions"], "Ready")
    assert found is not None
    return dict(found)


def test_all_ready() -> None:
    body = greeter()
    st = s.compute_status(body, *children(body, ready=2), SETTINGS, now=T0)
    assert st["observedGeneration"] == 3
    assert (st["replicas"], st["readyReplicas"]) == (2, 2)
    assert st["selector"] == "app.kubernetes.io/instance=hello,app.kubernetes.io/name=greeter"
    assert st["url"] == "http://hello.ns.svc.cluster.local:8080"
    assert ready_condition(st) == {
        "type": "Ready",
        "status": "True",
        "reason": "AllReplicasReady",
        "message": "2/2 replicas ready",
        "lastTransitionTime": "2030-01-01T00:00:00Z",
        "observedGeneration": 3,
    }
    assert s.is_ready(st)


def test_not_all_ready() -> None:
    body = greeter()
    st = s.compute_status(body, *children(body, ready=1), SETTINGS, now=T0)
    assert ready_condition(st)["reason"] == "ReplicasNotReady"
    assert not s.is_ready(st)


def test_rolling_out_while_old_pods_remain_or_the_controller_lags() -> None:
    body = greeter()
    for kwargs in ({"updated": 1}, {"total": 3}, {"seen": False}):
        st = s.compute_status(body, *children(body, ready=2, **kwargs), SETTINGS, now=T0)
        assert ready_condition(st)["reason"] == "RollingOut", kwargs


def test_scaled_to_zero_is_ready() -> None:
    body = greeter(replicas=0)
    assert s.is_ready(s.compute_status(body, *children(body, ready=0), SETTINGS, now=T0))


def test_missing_or_drifted_child_is_not_ready_and_not_observed() -> None:
    body = greeter(status={"observedGeneration": 2})
    deployment, service = children(body, ready=2)
    st = s.compute_status(body, None, service, SETTINGS, now=T0)
    assert ready_condition(st)["reason"] == "Reconciling"
    assert "Deployment missing" in ready_condition(st)["message"]
    assert st["observedGeneration"] == 2
    deployment["spec"]["replicas"] = 7
    st = s.compute_status(body, deployment, service, SETTINGS, now=T0)
    assert "Deployment spec.replicas" in ready_condition(st)["message"]


def test_failure_wins_and_keeps_the_old_observed_generation() -> None:
    body = greeter(status={"observedGeneration": 2})
    failure = s.Failure("ChildConflict", "Service ns/hello already exists and is not ours")
    st = s.compute_status(body, *children(body, ready=2), SETTINGS, failure=failure, now=T0)
    for type_ in ("Ready", "Reconciled"):
        cond = conditions.find_condition(st["conditions"], type_)
        assert cond is not None
        assert (cond["status"], cond["reason"]) == ("False", "ChildConflict")
    assert st["observedGeneration"] == 2


def test_transition_time_moves_only_on_change_and_no_change_means_no_write() -> None:
    body = greeter()
    first = s.compute_status(body, *children(body, ready=2), SETTINGS, now=T0)
    again = s.compute_status(greeter(status=first), *children(body, ready=2), SETTINGS, now=T1)
    assert not s.status_changed(first, again)
    assert ready_condition(again)["lastTransitionTime"] == "2030-01-01T00:00:00Z"
    worse = s.compute_status(greeter(status=first), *children(body, ready=1), SETTINGS, now=T1)
    assert s.status_changed(first, worse)
    assert ready_condition(worse)["lastTransitionTime"] == "2030-01-01T00:05:00Z"
