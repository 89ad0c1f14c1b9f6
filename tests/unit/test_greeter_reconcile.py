"""Reconciliation against an in-memory apiserver that counts writes.

The fake keeps what matters for the controller's promises: server-side defaults (so "matches"
must tolerate them), resourceVersion preconditions (so stale writes fail), AlreadyExists, and
JSON merge patch semantics (nulls delete, lists replace).
"""

from __future__ import annotations

import copy
import itertools
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from kopfscale.greeter import manifests as m
from kopfscale.greeter import passes, reconcile
from kopfscale.greeter import status as s
from kopfscale.kube import ApiError, backoff, ownership
from kopfscale.kube.errors import ApiError as KubeApiError
from kopfscale.settings import OperatorSettings

SETTINGS = OperatorSettings(greeter_image="example.org/kopfscale:1", cluster_domain="cluster.local")
Body = dict[str, Any]


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; nulls inside replaced lists decode to absent fields, as in Go."""
    if not isinstance(patch, dict):
        return m.prune_nones(copy.deepcopy(patch))
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Body] = {}
        self.writes: list[tuple[str, str, str]] = []
        self.fail_next: list[ApiError] = []
        self._rv = itertools.count(100)

    def _stamp(self, obj: Body) -> Body:
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        return obj

    def _maybe_fail(self) -> None:
        if self.fail_next:
            raise self.fail_next.pop(0)

    @staticmethod
    def _default(obj: Body) -> Body:
        if obj.get("kind") == "Deployment":
            for c in obj["spec"]["template"]["spec"]["containers"]:
                c.setdefault("resources", {})
                c.setdefault("imagePullPolicy", "IfNotPresent")
            obj["spec"].setdefault("strategy", {"type": "RollingUpdate"})
        elif obj.get("kind") == "Service":
            obj["spec"].setdefault("clusterIP", "10.0.0.1")
        return obj

    def put(self, kind: str, body: Body) -> Body:
        meta = body["metadata"]
        body = copy.deepcopy(body)
        body.setdefault("kind", kind)
        body["metadata"].setdefault("uid", f"uid-{meta['name']}-{kind}")
        body["metadata"].setdefault("generation", 1)
        self.objects[(kind, meta["namespace"], meta["name"])] = self._stamp(self._default(body))
        return copy.deepcopy(body)

    def get_child(self, kind: str, namespace: str, name: str) -> Body | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def create_child(self, kind: str, namespace: str, body: Body) -> Body:
        self._maybe_fail()
        if (kind, namespace, body["metadata"]["name"]) in self.objects:
            raise ApiError(409, "AlreadyExists", "already exists")
        self.writes.append(("create", kind, body["metadata"]["name"]))
        return self.put(kind, body)

    def patch_child(self, kind: str, namespace: str, name: str, patch: Body) -> Body:
        self._maybe_fail()
        key = (kind, namespace, name)
        live = self.objects.get(key)
        if live is None:
            raise ApiError(404, "NotFound", "not found")
        if patch["metadata"].get("resourceVersion") not in (None, live["metadata"]["resourceVersion"]):
            raise ApiError(409, "Conflict", "the object has been modified")
        self.writes.append(("patch", kind, name))
        new = self._default(
            merge(live, {**patch, "metadata": {**patch["metadata"], "resourceVersion": None}})
        )
        if new["spec"] != live["spec"]:
            new["metadata"]["generation"] += 1
        self.objects[key] = self._stamp(new)
        return copy.deepcopy(new)

    def get_greeter(self, namespace: str, name: str) -> Body | None:
        return self.get_child("Greeter", namespace, name)

    def patch_greeter_status(self, namespace: str, name: str, patch: Body) -> Body:
        key = ("Greeter", namespace, name)
        live = self.objects[key]
        if patch["metadata"].get("resourceVersion") not in (None, live["metadata"]["resourceVersion"]):
            raise ApiError(409, "Conflict", "the object has been modified")
        self.writes.append(("status", "Greeter", name))
        live["status"] = merge(live.get("status") or {}, patch["status"])
        self._stamp(live)
        return copy.deepcopy(live)

    def writes_to(self, kind: str) -> list[tuple[str, str, str]]:
        return [w for w in self.writes if w[1] == kind]


@pytest.fixture()
def api() -> FakeApi:
    return FakeApi()


def new_greeter(api: FakeApi, **spec: Any) -> Body:
    body = {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "Greeter",
        "metadata": {"name": "hello", "namespace": "ns", "uid": "greeter-uid", "generation": 1},
        "spec": {"message": "Hello", "replicas": 1, "port": 8080, "serviceType": "ClusterIP", **spec},
    }
    return api.put("Greeter", body)


def converge(api: FakeApi, greeter: Body) -> reconcile.Result:
    result = reconcile.ensure_children(api, greeter, SETTINGS)
    reconcile.sync_status(
        api, greeter, SETTINGS, deployment=result.deployment, service=result.service, known_children=True
    )
    return result


def test_creates_owned_children_then_writes_nothing(api: FakeApi) -> None:
    greeter = new_greeter(api)
    result = converge(api, greeter)
    assert [a.verb for a in result.actions] == ["created", "created"]
    for kind in ("Deployment", "Service"):
        child = api.get_child(kind, "ns", "hello")
        assert child is not None and ownership.is_controlled_by(child, "greeter-uid")
    assert ("status", "Greeter", "hello") in api.writes

    api.writes.clear()
    for _ in range(3):  # resume, re-run, timer: level-based, nothing to do
        greeter = api.get_greeter("ns", "hello")
        assert greeter is not None
        assert converge(api, greeter).actions == []
    assert api.writes == []


def test_message_change_patches_only_the_deployment(api: FakeApi) -> None:
    converge(api, new_greeter(api))
    greeter = api.get_greeter("ns", "hello")
    assert greeter is not None
    greeter["spec"]["message"] = "Bonjour"
    greeter["metadata"]["generation"] = 2
    api.objects[("Greeter", "ns", "hello")] = copy.deepcopy(greeter)
    api.writes.clear()
    result = converge(api, greeter)
    assert [(a.kind, a.verb) for a in result.actions] == [("Deployment", "updated")]
    assert api.writes_to("Deployment") == [("patch", "Deployment", "hello")]
    assert api.writes_to("Service") == []
    deployment = api.get_child("Deployment", "ns", "hello")
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "GREETER_MESSAGE", "value": "Bonjour"} in container["env"]


def test_removing_resources_removes_them(api: FakeApi) -> None:
    greeter = new_greeter(api, resources={"limits": {"cpu": "1"}})
    converge(api, greeter)
    del greeter["spec"]["resources"]
    converge(api, greeter)
    deployment = api.get_child("Deployment", "ns", "hello")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"] == {}
    api.writes.clear()
    assert converge(api, greeter).actions == []


def test_foreign_child_is_never_touched(api: FakeApi) -> None:
    greeter = new_greeter(api)
    api.put(
        "Service",
        {
            "metadata": {"name": "hello", "namespace": "ns", "labels": {"mine": "yes"}},
            "spec": {"ports": [{"port": 1}]},
        },
    )
    before = api.get_child("Service", "ns", "hello")
    with pytest.raises(reconcile.ChildConflict, match="not ours"):
        reconcile.ensure_children(api, greeter, SETTINGS)
    assert api.get_child("Service", "ns", "hello") == before
    assert api.writes_to("Service") == []


def test_stale_write_is_retried_against_fresh_state(api: FakeApi) -> None:
    greeter = new_greeter(api)
    converge(api, greeter)
    live = api.objects[("Deployment", "ns", "hello")]
    live["spec"]["replicas"] = 9
    api.fail_next.append(ApiError(409, "Conflict", "the object has been modified"))
    result = converge(api, greeter)
    assert [(a.kind, a.verb, a.fields) for a in result.actions] == [
        ("Deployment", "updated", ("spec.replicas",))
    ]
    assert api.objects[("Deployment", "ns", "hello")]["spec"]["replicas"] == 1


def test_lost_race_on_create_adopts_nothing_foreign(api: FakeApi) -> None:
    greeter = new_greeter(api)

    original = api.create_child

    def racing_create(kind: str, namespace: str, body: Body) -> Body:
        if kind == "Deployment":
            api.put(
                "Deployment",
                {
                    **copy.deepcopy(body),
                    "metadata": {**body["metadata"], "ownerReferences": [], "labels": {}},
                },
            )
            raise ApiError(409, "AlreadyExists", "already exists")
        return original(kind, namespace, body)

    api.create_child = racing_create  # type: ignore[method-assign]
    with pytest.raises(reconcile.ChildConflict):
        reconcile.ensure_children(api, greeter, SETTINGS)


def test_api_errors_become_failures_with_reasons(api: FakeApi) -> None:
    greeter = new_greeter(api)
    api.fail_next.append(ApiError(500, "Internal", "etcd is down"))
    with pytest.raises(reconcile.ApiError) as info:
        reconcile.ensure_children(api, greeter, SETTINGS)
    assert info.value.failure().reason == "ApiServerError"
    reconcile.sync_status(api, greeter, SETTINGS, failure=info.value.failure())
    stored = api.get_greeter("ns", "hello")
    assert stored is not None and not s.is_ready(stored["status"])


class Events:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    def info(self, body: Any, *, reason: str, message: str) -> None:
        self.posted.append(("Normal", reason, message))

    def warn(self, body: Any, *, reason: str, message: str) -> None:
        self.posted.append(("Warning", reason, message))


@pytest.fixture()
def events(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> Iterator[Events]:
    recorder = Events()
    monkeypatch.setattr(kopf, "info", recorder.info)
    monkeypatch.setattr(kopf, "warn", recorder.warn)
    yield recorder


def greeter_pass(api: FakeApi) -> passes.GreeterPass:
    """The hello Greeter's entry in the scheduler, over the fake API."""
    uid = fresh(api)["metadata"]["uid"]
    return passes.GreeterPass(
        "ns", "hello", uid, logging.getLogger("t"), lambda: api, SETTINGS, passes.StatusDigests()
    )


def fresh(api: FakeApi) -> Body:
    greeter = api.get_greeter("ns", "hello")
    assert greeter is not None
    return greeter


def test_handler_events_created_then_drift_then_updated(api: FakeApi, events: Events) -> None:
    logger = logging.getLogger("test")
    new_greeter(api)
    passes.reconcile_greeter(fresh(api), logger, api=api, config=SETTINGS)
    assert [e[:2] for e in events.posted] == [("Normal", "Created")]  # one event for both children
    assert events.posted[0][2] == "Created Deployment hello and created Service hello"
    assert fresh(api)["status"]["observedGeneration"] == 1

    events.posted.clear()
    del api.objects[("Service", "ns", "hello")]
    passes.reconcile_greeter(fresh(api), logger, api=api, config=SETTINGS)
    assert [e[:2] for e in events.posted] == [("Normal", "DriftRestored")]

    events.posted.clear()
    greeter = fresh(api)
    greeter["spec"]["replicas"] = 3
    greeter["metadata"]["generation"] = 2
    api.objects[("Greeter", "ns", "hello")] = copy.deepcopy(greeter)
    passes.reconcile_greeter(fresh(api), logger, api=api, config=SETTINGS)
    assert [e[:2] for e in events.posted] == [("Normal", "Updated")]
    assert "spec.replicas" in events.posted[0][2]


def test_a_failed_pass_is_a_warning_a_condition_and_a_retry_after_the_backoff(
    api: FakeApi, events: Events
) -> None:
    new_greeter(api)
    api.put(
        "Deployment",
        {
            "metadata": {"name": "hello", "namespace": "ns"},
            "spec": {"template": {"spec": {"containers": []}}},
        },
    )
    entry = greeter_pass(api)
    assert [entry.run() for _ in range(4)] == [1, 2, 4, 8]  # the shared backoff, not one per event
    assert [e[:2] for e in events.posted] == [("Warning", "ChildConflict")]
    ready = next(c for c in fresh(api)["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ChildConflict")
    assert api.writes_to("Deployment") == []
    api.objects.pop(("Deployment", "ns", "hello"))  # the user removes the foreign Deployment
    assert entry.run() == passes.RESYNC
    assert entry.run() == passes.RESYNC and entry.failures == 0


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff(r + 1) for r in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    # The API server did not answer: what waits is retried within 5 s of it being back.
    assert [backoff(r + 1, transient=True) for r in range(5)] == [1, 2, 4, 5, 5]


@pytest.mark.parametrize(
    ("status", "transient"), [(None, True), (500, True), (503, True), (429, True), (403, False), (422, False)]
)
def test_only_answers_that_pass_by_themselves_are_transient(status: int | None, transient: bool) -> None:
    assert KubeApiError(status, "", "m").transient is transient


def test_a_failure_that_persists_is_one_warning_not_one_per_retry(api: FakeApi, events: Events) -> None:
    new_greeter(api)
    api.put("Service", {"metadata": {"name": "hello", "namespace": "ns"}, "spec": {"ports": []}})
    entry = greeter_pass(api)
    for _ in range(3):
        entry.run()
    assert [e[:2] for e in events.posted if e[0] == "Warning"] == [("Warning", "ChildConflict")]
