"""The Greeter's reads of one reconciliation: kopf's indexes first, the API server after a refusal.

The indexes (declared in :mod:`handlers`) hold every Greeter and every labelled child Deployment
and Service, trimmed to what the controller compares and reports; :class:`CachedApi` answers
reads from them through the shared :class:`kopfscale.kube.indexes.IndexView` (our own recent
writes on top) and sends writes to the API server. See that module for why a stale index is safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kopfscale.greeter.reconcile import Api, Body, Kind
from kopfscale.kube.errors import ApiError
from kopfscale.kube.indexes import IndexView, Key, ObjectIndex, RecentWrites, key_of, pack, pick, unpack

__all__ = ["CachedApi", "Key", "RecentWrites", "key_of", "pack", "trim_child", "trim_greeter", "unpack"]

#: Metadata the controller reads; the rest (managedFields, annotations) would only cost memory.
_METADATA = ("name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp")
_CHILD_METADATA = (*_METADATA, "labels", "ownerReferences")


def trim_greeter(body: Mapping[str, Any]) -> Body:
    """The Greeter as the controller needs it: identity, generation, spec and status."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": pick(body.get("metadata") or {}, _METADATA),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


def trim_child(body: Mapping[str, Any]) -> Body:
    """A child as the controller compares it: our labels and owner, its spec, its status."""
    return {
        "kind": body.get("kind"),
        "metadata": pick(body.get("metadata") or {}, _CHILD_METADATA),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


def trim(kind: str, body: Body) -> Body:
    return trim_greeter(body) if kind == "Greeter" else trim_child(body)


def _based_on(patch: Body) -> str | None:
    return (patch.get("metadata") or {}).get("resourceVersion")


class CachedApi:
    """An :class:`Api` that reads from kopf's indexes and falls back to the apiserver after a 409.

    One instance serves one reconciliation: the objects that refused a write are read fresh
    for the rest of it; the objects it wrote are read as the apiserver returned them until the
    index has caught up (the shared :class:`RecentWrites`).
    """

    def __init__(
        self,
        api: Api,
        greeters: ObjectIndex,
        deployments: ObjectIndex,
        services: ObjectIndex,
        recent: RecentWrites | None = None,
    ) -> None:
        self._api = api
        indexes = {"Greeter": greeters, "Deployment": deployments, "Service": services}
        self._view = IndexView(indexes, recent if recent is not None else RecentWrites(), trim)

    def _refusing(self, kind: str, namespace: str, name: str, write: Any) -> Body:
        try:
            written: Body = write()
        except ApiError as e:
            self._view.refused(kind, namespace, name, e.status)
            raise
        return written

    def get_child(self, kind: Kind, namespace: str, name: str) -> Body | None:
        if self._view.must_ask(kind, namespace, name):
            return self._api.get_child(kind, namespace, name)
        return self._view.read(kind, namespace, name)

    def create_child(self, kind: Kind, namespace: str, body: Body) -> Body:
        name = body["metadata"]["name"]
        created = self._refusing(kind, namespace, name, lambda: self._api.create_child(kind, namespace, body))
        return self._view.wrote(kind, created, None)

    def patch_child(self, kind: Kind, namespace: str, name: str, patch: Body) -> Body:
        patched = self._refusing(
            kind, namespace, name, lambda: self._api.patch_child(kind, namespace, name, patch)
        )
        return self._view.wrote(kind, patched, _based_on(patch))

    def get_greeter(self, namespace: str, name: str) -> Body | None:
        if self._view.must_ask("Greeter", namespace, name):
            return self._api.get_greeter(namespace, name)
        return self._view.read("Greeter", namespace, name)

    def patch_greeter_status(self, namespace: str, name: str, patch: Body) -> Body:
        patched = self._refusing(
            "Greeter", namespace, name, lambda: self._api.patch_greeter_status(namespace, name, patch)
        )
        return self._view.wrote("Greeter", patched, _based_on(patch))
