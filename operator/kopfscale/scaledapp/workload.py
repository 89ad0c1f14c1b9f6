"""The scaled workload: its ``/scale`` subresource, and the Deployment a ``spec.template`` asks for.

Every workload is read and scaled the same way, through ``/apis/{group}/{version}/namespaces/
{namespace}/{plural}/{name}/scale``: a Deployment, a StatefulSet, a Greeter, anything with a scale
subresource. The plural is found by API discovery (cached). Calls are synchronous (the official
client); the async handlers run them in threads.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes

from kopfscale import GROUP, VERSION, kube
from kopfscale.scaledapp.spec import ScaledAppSpec, ScaleTargetRef

SCALEDAPP_LABEL = "kopfscale.dev/scaledapp"
MANAGED_BY = {"app.kubernetes.io/managed-by": "kopfscale"}
TEMPLATE_HASH_ANNOTATION = "kopfscale.dev/template-hash"
DISCOVERY_TTL = 300.0  # seconds a positive discovery answer is trusted
REQUEST_TIMEOUT = 10.0  # seconds per API call, so a hung API server never stalls a loop forever

ApiException = kubernetes.client.exceptions.ApiException


class TargetError(Exception):
    """The workload cannot be scaled; ``reason`` is a CamelCase condition reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ScaleTarget:
    group: str
    version: str
    plural: str
    kind: str
    name: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class ScaleState:
    replicas: int  # spec.replicas of the scale: what the HPA calls the current replica count
    status_replicas: int
    selector: str | None  # label selector of the pods (for resource metrics)


_discovery: dict[tuple[str, str], tuple[float, dict[str, tuple[str, bool]]]] = {}
_discovery_lock = threading.Lock()


def _resources(group: str, version: str) -> dict[str, tuple[str, bool]]:
    """kind -> (plural, has a /scale subresource) for one group/version, cached for a while."""
    key = (group, version)
    with _discovery_lock:
        cached = _discovery.get(key)
        if cached and time.monotonic() - cached[0] < DISCOVERY_TTL:
            return cached[1]
    try:
        listing = kube.custom_objects().get_api_resources(group, version, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as e:
        if e.status == 404:
            raise TargetError(
                "KindNotFound", f"the API {group}/{version} is not served by this cluster"
            ) from None
        raise
    names = {r.name for r in listing.resources}
    result: dict[str, tuple[str, bool]] = {}
    for r in listing.resources:
        if "/" not in r.name:
            result[r.kind] = (r.name, f"{r.name}/scale" in names)
    with _discovery_lock:
        _discovery[key] = (time.monotonic(), result)
    return result


def forget_discovery() -> None:
    with _discovery_lock:
        _discovery.clear()


def resolve(ref: ScaleTargetRef, namespace: str) -> ScaleTarget:
    if not ref.group:
        raise TargetError("NoScaleSubresource", f"{ref.kind} in the core API group is not supported")
    resources = _resources(ref.group, ref.version)
    if ref.kind not in resources:
        forget_discovery()  # a CRD may have been installed since
        raise TargetError("KindNotFound", f"the kind {ref.kind} is not served by {ref.api_version}")
    plural, scalable = resources[ref.kind]
    if not scalable:
        raise TargetError(
            "NoScaleSubresource",
            f"{ref.kind} ({ref.api_version}) has no /scale subresource, so it cannot be scaled",
        )
    return ScaleTarget(ref.group, ref.version, plural, ref.kind, ref.name, namespace)


def target_of(spec: ScaledAppSpec, name: str, namespace: str) -> ScaleTarget:
    if spec.scale_target_ref is not None:
        return resolve(spec.scale_target_ref, namespace)
    return ScaleTarget("apps", "v1", "deployments", "Deployment", name, namespace)


def _state(obj: Mapping[str, Any]) -> ScaleState:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    selector = status.get("selector")
    return ScaleState(
        replicas=int(spec.get("replicas") or 0),
        status_replicas=int(status.get("replicas") or 0),
        selector=selector if isinstance(selector, str) and selector else None,
    )


def _raise_for(e: ApiException, target: ScaleTarget) -> None:
    if e.status == 404:
        raise TargetError(
            "TargetNotFound", f"{target} does not exist in namespace {target.namespace}"
        ) from None
    if e.status == 403:
        raise TargetError("Forbidden", f"not allowed to scale {target}: {e.reason}") from None
    raise e


def read_scale(target: ScaleTarget) -> ScaleState:
    try:
        obj = kube.custom_objects().get_namespaced_custom_object_scale(
            target.group,
            target.version,
            target.namespace,
            target.plural,
            target.name,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as e:
        _raise_for(e, target)
        raise
    return _state(obj)  # type: ignore[arg-type]  # the client returns the JSON object


def patch_scale(target: ScaleTarget, replicas: int) -> ScaleState:
    try:
        obj = kube.custom_objects().patch_namespaced_custom_object_scale(
            target.group,
            target.version,
            target.namespace,
            target.plural,
            target.name,
            {"spec": {"replicas": replicas}},
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as e:
        _raise_for(e, target)
        raise
    return _state(obj)  # type: ignore[arg-type]  # the client returns the JSON object


# --- the owned Deployment -------------------------------------------------------------------------
def selector_labels(name: str) -> dict[str, str]:
    return {SCALEDAPP_LABEL: name}


def pod_template(name: str, template: Mapping[str, Any]) -> dict[str, Any]:
    tmpl = copy.deepcopy(dict(template))
    metadata = dict(tmpl.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **selector_labels(name)}
    tmpl["metadata"] = metadata
    return tmpl


def template_hash(template: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def deployment_manifest(
    name: str, namespace: str, template: Mapping[str, Any], replicas: int
) -> dict[str, Any]:
    """The Deployment kopfscale runs for ``spec.template`` (owner reference added by the caller)."""
    tmpl = pod_template(name, template)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**MANAGED_BY, **selector_labels(name)},
            "annotations": {TEMPLATE_HASH_ANNOTATION: template_hash(tmpl)},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(name)},
            "template": tmpl,
        },
    }


def _deployment_state(deployment: Any) -> ScaleState:
    """The /scale view of a Deployment object we already hold (saves a second request)."""
    spec, status = deployment.spec, deployment.status
    labels = (spec.selector.match_labels or {}) if spec and spec.selector else {}
    return ScaleState(
        replicas=int(spec.replicas or 0) if spec else 0,
        status_replicas=int(status.replicas or 0) if status else 0,
        selector=",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None,
    )


def trim_deployment(body: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`indexed_state` needs of an owned Deployment; kept in a kopf index per object."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    return {
        "owners": sorted(str(o.get("uid")) for o in meta.get("ownerReferences") or []),
        "templateHash": (meta.get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION),
        "deleting": bool(meta.get("deletionTimestamp")),
        "replicas": int(spec.get("replicas") or 0),
        "statusReplicas": int((body.get("status") or {}).get("replicas") or 0),
        "matchLabels": dict((spec.get("selector") or {}).get("matchLabels") or {}),
    }


def indexed_state(
    indexed: Mapping[str, Any] | None, manifest: Mapping[str, Any], owner_uid: str
) -> ScaleState | None:
    """The scale of the owned Deployment as the watch last saw it, if nothing needs doing to it.

    ``None`` means "ask the apiserver": the Deployment is unknown, being deleted, not ours, or
    its pod template is out of date; :func:`ensure_deployment` then creates, updates or refuses.
    """
    if indexed is None or indexed["deleting"] or owner_uid not in indexed["owners"]:
        return None
    if indexed["templateHash"] != manifest["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]:
        return None
    labels = indexed["matchLabels"]
    return ScaleState(
        replicas=indexed["replicas"],
        status_replicas=indexed["statusReplicas"],
        selector=",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None,
    )


def ensure_deployment(manifest: Mapping[str, Any], owner_uid: str) -> tuple[str, ScaleState]:
    """Create the Deployment, or bring its pod template up to date; never touches its replicas.

    Returns what was done (``created``, ``updated`` or ``unchanged``) and the Deployment's scale.
    A Deployment of that name that this ScaledApp does not own is never read as its workload,
    written or scaled: that is a ``DeploymentConflict``.
    """
    apps = kube.apps_v1()
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    try:
        existing = apps.read_namespaced_deployment(name, namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as e:
        if e.status != 404:
            raise
        try:
            body: Any = manifest  # the client serializes plain JSON bodies as they are
            apps.create_namespaced_deployment(namespace, body, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as ce:
            if ce.status != 409:  # created concurrently: the next reconcile compares it
                raise
        replicas = int(manifest["spec"]["replicas"])
        selector = ",".join(
            f"{k}={v}" for k, v in sorted(manifest["spec"]["selector"]["matchLabels"].items())
        )
        return "created", ScaleState(replicas=replicas, status_replicas=0, selector=selector)
    meta = existing.metadata
    assert meta is not None
    owners = meta.owner_references or []
    if not any(o.uid == owner_uid for o in owners):
        raise TargetError(
            "DeploymentConflict",
            f"a Deployment named {name} already exists and is not owned by this ScaledApp; "
            "rename the ScaledApp or use spec.scaleTargetRef to scale that Deployment",
        )
    state = _deployment_state(existing)
    wanted = manifest["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
    if (meta.annotations or {}).get(TEMPLATE_HASH_ANNOTATION) == wanted:
        return "unchanged", state
    patch = [
        {"op": "replace", "path": "/spec/template", "value": manifest["spec"]["template"]},
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {**(meta.annotations or {}), TEMPLATE_HASH_ANNOTATION: wanted},
        },
    ]
    apps.patch_namespaced_deployment(
        name, namespace, patch, _content_type="application/json-patch+json", _request_timeout=REQUEST_TIMEOUT
    )
    return "updated", state


def patch_status(name: str, namespace: str, status: Mapping[str, Any]) -> None:
    kube.custom_objects().patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "scaledapps",
        name,
        {"status": dict(status)},
        _request_timeout=REQUEST_TIMEOUT,
    )
