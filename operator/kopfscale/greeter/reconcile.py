"""Make a Greeter's children match it, and its status match the children.

The decisions live in :mod:`manifests` and :mod:`status` (pure); this module does the reads
and the few writes, through a small :class:`Api` protocol so that tests can count writes on a
fake. Writes are conditional (``metadata.resourceVersion`` in every patch): if anything changed
since we looked, the apiserver refuses, we look again, and we never overwrite a change we have
not compared, nor an object some other controller owns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from kubernetes.client.exceptions import ApiException

from kopfscale import GROUP, VERSION, kube
from kopfscale.greeter import manifests, status
from kopfscale.settings import OperatorSettings

Kind = Literal["Deployment", "Service"]
Body = dict[str, Any]
PLURAL = "greeters"
#: Attempts at one write when the object keeps changing under us (HTTP 409 Conflict).
WRITE_ATTEMPTS = 4


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
    """The apiserver refused or failed a request."""

    def __init__(self, action: str, exc: ApiException) -> None:
        self.status = exc.status
        self.reason = _reason_for(exc.status)
        super().__init__(f"{action} failed: HTTP {exc.status}: {_api_message(exc)}")


def _reason_for(code: int | None) -> str:
    if code == 403:
        return "Forbidden"
    if code == 422:
        return "InvalidChild"
    if code == 409:
        return "UpdateConflict"
    if code is not None and code >= 500:
        return "ApiServerError"
    return "ApiError"


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "")["message"])
    except (ValueError, KeyError, TypeError):
        return str(exc.reason or exc.body or "no details")


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
    owner = manifests.Owner.from_body(greeter)
    spec = manifests.GreeterSpec.from_spec(greeter.get("spec") or {})
    return {
        "Deployment": manifests.build_deployment(owner, spec, settings),
        "Service": manifests.build_service(owner, spec),
    }


def _describe_owner(live: Mapping[str, Any]) -> str:
    ref = manifests.controller_of(live)
    if ref is None:
        return "it has no controller"
    return f"it is controlled by {ref.get('kind')} {ref.get('name')} (uid {ref.get('uid')})"


def ensure_child(api: Api, kind: Kind, desired: Body) -> tuple[Body, Action | None]:
    """Create the child, or patch the fields we own if they differ; otherwise write nothing."""
    meta = desired["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["ownerReferences"][0]["uid"]
    for _ in range(WRITE_ATTEMPTS):
        try:
            live = api.get_child(kind, namespace, name)
        except ApiException as e:
            raise ApiError(f"reading {kind} {name}", e) from e
        if live is None:
            try:
                created = api.create_child(kind, namespace, manifests.prune_nones(desired))
            except ApiException as e:
                if e.status == 409:  # AlreadyExists: someone was faster; look at it again.
                    continue
                raise ApiError(f"creating {kind} {name}", e) from e
            return created, Action(kind, name, "created")
        if not manifests.is_controlled_by(live, uid):
            raise ChildConflict(
                f"{kind} {namespace}/{name} already exists and is not ours ({_describe_owner(live)}); "
                f"kopfscale will not touch it. Delete or rename it, or rename the Greeter."
            )
        if (live.get("metadata") or {}).get("deletionTimestamp"):
            raise ChildTerminating(f"{kind} {namespace}/{name} is being deleted; it will be recreated")
        found = manifests.child_differences(desired, live)
        if not found:
            return live, None
        patch = manifests.merge_patch(desired, (live.get("metadata") or {}).get("resourceVersion"))
        try:
            patched = api.patch_child(kind, namespace, name, patch)
        except ApiException as e:
            if e.status == 409:  # Changed since we read it: compare again against the new state.
                continue
            raise ApiError(f"updating {kind} {name}", e) from e
        return patched, Action(kind, name, "updated", tuple(found))
    raise UpdateConflict(f"{kind} {namespace}/{name} kept changing while being updated; will retry")


def ensure_children(api: Api, greeter: Mapping[str, Any], settings: OperatorSettings) -> Result:
    lives: dict[Kind, Body] = {}
    actions: list[Action] = []
    for kind, desired in desired_children(greeter, settings).items():
        lives[kind], action = ensure_child(api, kind, desired)
        if action is not None:
            actions.append(action)
    return Result(deployment=lives["Deployment"], service=lives["Service"], actions=actions)


def _our_child(api: Api, kind: Kind, greeter: Mapping[str, Any]) -> Body | None:
    meta = greeter["metadata"]
    live = api.get_child(kind, meta["namespace"], meta["name"])
    return live if live is not None and manifests.is_controlled_by(live, meta["uid"]) else None


def sync_status(
    api: Api,
    greeter: Mapping[str, Any],
    settings: OperatorSettings,
    *,
    deployment: Body | None = None,
    service: Body | None = None,
    failure: status.Failure | None = None,
    known_children: bool = False,
) -> Body | None:
    """Write the Greeter's status if (and only if) it changed; return the status now in place.

    ``known_children`` says the given children are fresh (just read or written); otherwise
    they are read. Conflicts (the Greeter changed since it was read) re-read everything.
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
            new = status.compute_status(current, deployment, service, settings, failure=failure)
            if not status.status_changed(current.get("status"), new):
                return dict(current.get("status") or {})
            resource_version = current["metadata"].get("resourceVersion")
            patch = {"metadata": {"resourceVersion": resource_version}, "status": new}
            try:
                api.patch_greeter_status(namespace, name, patch)
            except ApiException as e:
                if e.status in (404, 409):
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise
            return new
    except ApiException as e:
        raise ApiError(f"updating the status of Greeter {name}", e) from e
    raise UpdateConflict(f"Greeter {namespace}/{name} kept changing while its status was updated")


class KubeApi:
    """:class:`Api` over the official client's transport (``kopfscale.kube``), with dict bodies.

    The generated typed methods would convert bodies through pydantic models, which are
    stricter than the apiserver (an integer memory quantity fails) and lossy for fields they do
    not know; the controller compares and writes raw JSON, so it sends raw JSON too.
    """

    MERGE_PATCH = "application/merge-patch+json"
    FIELD_MANAGER = "kopfscale"

    @staticmethod
    def _path(kind: Kind, namespace: str, name: str | None = None) -> str:
        base = (
            f"/apis/apps/v1/namespaces/{namespace}/deployments"
            if kind == "Deployment"
            else f"/api/v1/namespaces/{namespace}/services"
        )
        return base if name is None else f"{base}/{name}"

    @staticmethod
    def _greeter_path(namespace: str, name: str) -> str:
        return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"

    def _request(
        self, method: str, path: str, body: Body | None = None, content_type: str = "application/json"
    ) -> Body:
        client = kube.api_client()
        query = [("fieldManager", self.FIELD_MANAGER)] if method in ("POST", "PATCH") else None
        request = client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response: Any = client.call_api(*request)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        loaded: Body = json.loads(data)
        return loaded

    def _get(self, path: str) -> Body | None:
        try:
            return self._request("GET", path)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def get_child(self, kind: Kind, namespace: str, name: str) -> Body | None:
        return self._get(self._path(kind, namespace, name))

    def create_child(self, kind: Kind, namespace: str, body: Body) -> Body:
        return self._request("POST", self._path(kind, namespace), body)

    def patch_child(self, kind: Kind, namespace: str, name: str, patch: Body) -> Body:
        return self._request("PATCH", self._path(kind, namespace, name), patch, self.MERGE_PATCH)

    def get_greeter(self, namespace: str, name: str) -> Body | None:
        return self._get(self._greeter_path(namespace, name))

    def patch_greeter_status(self, namespace: str, name: str, patch: Body) -> Body:
        return self._request(
            "PATCH", self._greeter_path(namespace, name) + "/status", patch, self.MERGE_PATCH
        )
