"""Reconciling from kopf's indexes: no reads from the apiserver, and a stale index loses nothing.

The indexes here are plain dicts shaped like kopf's (key -> collection of trimmed bodies),
filled from the fake apiserver of ``test_greeter_reconcile`` as a watch would fill them.
"""

from __future__ import annotations

import copy
from typing import Any

from kopfscale.greeter import cache, reconcile
from tests.unit.test_greeter_reconcile import SETTINGS, Body, FakeApi, converge, new_greeter


class CountingApi(FakeApi):
    """The fake apiserver, counting reads too."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[tuple[str, str]] = []

    def get_child(self, kind: str, namespace: str, name: str) -> Body | None:
        self.reads.append((kind, name))
        return super().get_child(kind, namespace, name)


def watched(api: FakeApi) -> dict[str, dict[cache.Key, list[str]]]:
    """What the watches would have indexed by now: every object as the fake holds it."""
    indexes: dict[str, dict[cache.Key, list[str]]] = {"Greeter": {}, "Deployment": {}, "Service": {}}
    for (kind, namespace, name), body in api.objects.items():
        trim = cache.trim_greeter if kind == "Greeter" else cache.trim_child
        indexes[kind][(namespace, name)] = [cache.pack(trim(copy.deepcopy(body)))]
    return indexes


def cached(api: FakeApi, indexes: dict[str, Any]) -> cache.CachedApi:
    return cache.CachedApi(api, indexes["Greeter"], indexes["Deployment"], indexes["Service"])


def converge_as_indexed(api: FakeApi, indexes: dict[str, Any]) -> reconcile.Result:
    """Reconcile the Greeter as the index shows it, the way child_changed does."""
    via = cached(api, indexes)
    greeter = via.get_greeter("ns", "hello")
    assert greeter is not None
    return converge(via, greeter)  # type: ignore[arg-type]


def test_a_converged_greeter_costs_no_request_at_all() -> None:
    api = CountingApi()
    converge(api, new_greeter(api))
    indexes = watched(api)
    api.reads.clear()
    api.writes.clear()
    assert converge_as_indexed(api, indexes).actions == []
    assert (api.reads, api.writes) == ([], [])


def test_a_stale_index_costs_one_refused_write_then_converges_from_the_apiserver() -> None:
    api = CountingApi()
    greeter = new_greeter(api)
    converge(api, greeter)
    stale = watched(api)
    # Someone scales the Deployment; the watch has not delivered it yet, and the index still
    # shows the old (matching) object, so the reconciliation sees nothing to do ...
    api.objects[("Deployment", "ns", "hello")]["spec"]["replicas"] = 7
    api.objects[("Deployment", "ns", "hello")]["metadata"]["resourceVersion"] = "999"
    assert converge(cached(api, stale), greeter).actions == []  # type: ignore[arg-type]
    # ... until that event arrives: now it is repaired, with a conditional write.
    fresh = watched(api)
    result = converge(cached(api, fresh), greeter)  # type: ignore[arg-type]
    assert [(a.kind, a.fields) for a in result.actions] == [("Deployment", ("spec.replicas",))]
    assert api.objects[("Deployment", "ns", "hello")]["spec"]["replicas"] == 1

    # An index that claims a change the apiserver no longer has: the write is refused (409),
    # the object is read from the apiserver, and nothing more is written.
    api.objects[("Deployment", "ns", "hello")]["metadata"]["resourceVersion"] = "1000"
    outdated = watched(api)
    claimed = cache.unpack(outdated["Deployment"][("ns", "hello")][0])
    claimed["spec"]["replicas"] = 5
    claimed["metadata"]["resourceVersion"] = "998"
    outdated["Deployment"][("ns", "hello")] = [cache.pack(claimed)]
    api.writes.clear()
    api.reads.clear()
    assert converge_as_indexed(api, outdated).actions == []
    assert api.writes == []
    assert api.reads == [("Deployment", "hello")]


def test_a_child_missing_from_a_late_index_is_not_created_twice() -> None:
    api = CountingApi()
    greeter = new_greeter(api)
    converge(api, greeter)
    late = watched(api)
    del late["Service"][("ns", "hello")]
    api.writes.clear()
    result = reconcile.ensure_children(cached(api, late), greeter, SETTINGS)
    assert result.actions == []
    assert api.writes == []  # the create was refused (AlreadyExists), then the Service compared


def test_our_own_writes_stand_in_for_events_the_index_has_not_seen_yet() -> None:
    api = CountingApi()
    greeter = new_greeter(api)
    empty: dict[str, dict[cache.Key, list[str]]] = {"Greeter": {}, "Deployment": {}, "Service": {}}
    recent = cache.RecentWrites()
    first = cache.CachedApi(api, empty["Greeter"], empty["Deployment"], empty["Service"], recent)
    assert len(reconcile.ensure_children(first, greeter, SETTINGS).actions) == 2
    api.writes.clear()
    # The Deployment's event arrives first and triggers a reconciliation; the Service's event
    # is still queued. Nothing is created twice, and nothing is even attempted.
    late = watched(api)
    del late["Service"][("ns", "hello")]
    second = cache.CachedApi(api, late["Greeter"], late["Deployment"], late["Service"], recent)
    assert reconcile.ensure_children(second, greeter, SETTINGS).actions == []
    assert (api.writes, api.reads) == ([], [])
    # Once the watch shows the Service (this version or any later one), the index is trusted again.
    assert recent.newer_than("Service", "ns", "hello", None) is not None
    assert recent.newer_than("Service", "ns", "hello", {"metadata": {"resourceVersion": "7"}}) is None
    assert recent.newer_than("Service", "ns", "hello", None) is None
