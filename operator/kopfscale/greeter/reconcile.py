"""Make a Greeter's children match it, and its status match the children.

The decisions live in :mod:`manifests` and :mod:`status` (pure); this module does the reads
and the few writes, through a small :class:`Api` protocol so that tests can count writes on a
fake. Writes are conditional (``metadata.resourceVersion`` in every patch): if anything changed
since we looked, the apiserver refuses, we look again, and we never overwrite a change we have
not compared, nor an object some other controller owns.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kopfscale import GREETERS, GROUP, VERSION
from kopfscale.greeter import manifests, status
from kopfscale.kube import children, ownership
from kopfscale.kube import status as kube_status
from kopfscale.kube.errors import ApiError as KubeApiError
from kopfscale.kube.transport import Transport, path
from kopfscale.settings import OperatorSettings

Kind = Literal["Deployment", "Service"]
Body = dict[str, Any]
PLURAL = GREETERS
#: Attempts at one status write when the Greeter keeps changing under us (HTTP 409 Conflict).
WRITE_ATTEMPTS = children.WRITE_ATTEMPTS


class Api(Protocol):
    """The reads and writes the controller needs; :class:`KubeApi` is the real one."""

    def get_child(self, kind: Kind, namespace: str, name: str) -> Body | None: ...
    def create_child(self, kind: Kind, namespace: str, body: Body) -> Body: ...
    def patch_child(self, kind: Kind, namespace: str, name: str, patch: Body) -> Body: ...
    def get_greeter(self, namespace: str, name: str) -> Body | None: ...
    def patch_greeter_status(self, namespace: str, name: str, patch: Body) -> Body: ...


class ReconcileError(Exception):
    """A failure users should see: it becomes a ``False`` condition and a Warning event."""

    reason = "ReconcileFailed"
    transient = False  # True: the API server did not answer; retried within seconds

    def failure(self) -> status.Failure:
        return status.Failure(self.reason, str(self))


class ChildConflict(ReconcileError):
    """The child's name is taken by an object that kopfscale does not control."""

    reason = "ChildConflict"


class ChildTerminating(ReconcileError):
    """The child is being deleted; it is recreated once it is gone (a transient state)."""

    reason = "ChildTerminating"


class UpdateConflict(ReconcileError):
    """The object kept changing between our read and our write."""

    reason = "UpdateConflict"


class ApiError(ReconcileError):
    """The apiserver refused or failed a request (or did not answer in time)."""

    def __init__(self, action: str, exc: KubeApiError) -> None:
        self.status = exc.status
        self.transient = exc.transient
        self.reason = exc.condition_reason(invalid="InvalidChild")
        super().__init__(f"{action} failed: {exc}")


@dataclass(frozen=True)
class Action:
    """One write the reconciliation made, for events and logs."""

    kind: Kind
    name: str
    verb: Literal["created", "updated"]
    fields: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.verb == "created":
            return f"created {self.kind} {self.name}"
        return f"updated {self.kind} {self.name} ({manifests.describe_differences(list(self.fields))})"


@dataclass
class Result:
    deployment: Body
    service: Body
    actions: list[Action] = field(default_factory=list)


def desired_children(greeter: Mapping[str, Any], settings: OperatorSettings) -> dict[Kind, Body]:
    desired = manifests.desired_for(greeter, settings)
    return {"Deployment": desired.deployment, "Service": desired.service}


def ensure_child(api: Api, kind: Kind, desired: Body) -> tuple[Body, Action | None]:
    """Create the child, or patch the fields we own if they differ; otherwise write nothing."""
    meta = desired["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["ownerReferences"][0]["uid"]
    try:
        outcome = children.ensure_child(
            owner_uid=uid,
            read=lambda: api.get_child(kind, namespace, name),
            create=lambda: api.create_child(kind, namespace, manifests.prune_nones(desired)),
            update=lambda live: api.patch_child(
                kind, namespace, name, manifests.merge_patch(desired, live["metadata"].get("resourceVersion"))
            ),
            differences=lambda live: manifests.child_differences(desired, live),
        )
    except children.NotOurs as e:
        raise ChildConflict(
            f"{kind} {namespace}/{name} already exists and is not ours "
            f"({ownership.describe_controller(e.live)}); "
            f"kopfscale will not touch it. Delete or rename it, or rename the Greeter."
        ) from None
    except children.Terminating:
        raise ChildTerminating(f"{kind} {namespace}/{name} is being deleted; it will be recreated") from None
    except children.KeptChanging:
        raise UpdateConflict(
            f"{kind} {namespace}/{name} kept changing while being updated; will retry"
        ) from None
    except children.WriteFailed as e:
        raise ApiError(f"{e.action} {kind} {name}", e.error) from e
    if outcome.verb is None:
        return outcome.live, None
    return outcome.live, Action(kind, name, outcome.verb, outcome.fields)


def ensure_children(
    api: Api, greeter: Mapping[str, Any], settings: OperatorSettings, desired: manifests.Desired | None = None
) -> Result:
    wanted = desired or manifests.desired_for(greeter, settings)
    lives: dict[Kind, Body] = {}
    actions: list[Action] = []
    wanted_children: dict[Kind, Body] = {"Deployment": wanted.deployment, "Service": wanted.service}
    for kind, child in wanted_children.items():
        lives[kind], action = ensure_child(api, kind, child)
        if action is not None:
            actions.append(action)
    return Result(deployment=lives["Deployment"], service=lives["Service"], actions=actions)


def _our_child(api: Api, kind: Kind, greeter: Mapping[str, Any]) -> Body | None:
    meta = greeter["metadata"]
    live = api.get_child(kind, meta["namespace"], meta["name"])
    return live if live is not None and ownership.is_controlled_by(live, meta["uid"]) else None


def sync_status(
    api: Api,
    greeter: Mapping[str, Any],
    settings: OperatorSettings,
    *,
    deployment: Body | None = None,
    service: Body | None = None,
    failure: status.Failure | None = None,
    known_children: bool = False,
    desired: manifests.Desired | None = None,
) -> Body | None:
    """Write the Greeter's status if (and only if) it changed; return the status now in place.

    ``known_children`` says the given children are fresh (just read or written); otherwise
    they are read. ``desired`` is the pass's :func:`manifests.desired_for` of ``greeter``.
    Conflicts (the Greeter changed since it was read) re-read everything.
    """
    meta = greeter["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    current: Mapping[str, Any] | None = greeter
    try:
        for attempt in range(WRITE_ATTEMPTS):
            if attempt > 0:
                current = api.get_greeter(namespace, name)
                known_children = False
            if current is None or current["metadata"].get("uid") != meta["uid"]:
                return None  # Deleted (or replaced by a namesake): not ours to report on.
            if not known_children:
                deployment = _our_child(api, "Deployment", current)
                service = _our_child(api, "Service", current)
            previous = dict(current.get("status") or {})
            # The desired state of the Greeter we were given, unless a conflict made us read it again.
            wanted = desired if attempt == 0 else None
            new = status.compute_status(
                current, deployment, service, settings, failure=failure, desired=wanted
            )
            if not status.status_changed(previous, new):
                return previous
            patch = kube_status.status_patch(previous, new, current["metadata"].get("resourceVersion"))
            try:
                api.patch_greeter_status(namespace, name, patch)
            except KubeApiError as e:
                if e.status in (404, 409):
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise
            return new
    except KubeApiError as e:
        raise ApiError(f"updating the status of Greeter {name}", e) from e
    raise UpdateConflict(f"Greeter {namespace}/{name} kept changing while its status was updated")


class KubeApi:
    """:class:`Api` over the shared transport (:mod:`kopfscale.kube`): raw JSON, timeouts, one pool."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @staticmethod
    def _path(kind: Kind, namespace: str, name: str | None = None) -> str:
        if kind == "Deployment":
            return path("apps", "v1", "deployments", namespace, name)
        return path("", "v1", "services", namespace, name)

    @staticmethod
    def _greeter_path(namespace: str, name: str) -> str:
        return path(GROUP, VERSION, PLURAL, namespace, name)

    def get_child(self, kind: Kind, namespace: str, name: str) -> Body | None:
        return self.transport.get(self._path(kind, namespace, name))

    def create_child(self, kind: Kind, namespace: str, body: Body) -> Body:
        return self.transport.create(self._path(kind, namespace), body)

    def patch_child(self, kind: Kind, namespace: str, name: str, patch: Body) -> Body:
        return self.transport.merge_patch(self._path(kind, namespace, name), patch)

    def get_greeter(self, namespace: str, name: str) -> Body | None:
        return self.transport.get(self._greeter_path(namespace, name))

    def patch_greeter_status(self, namespace: str, name: str, patch: Body) -> Body:
        return kube_status.patch_status(self.transport, self._greeter_path(namespace, name), patch)
