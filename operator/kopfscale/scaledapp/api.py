"""The Kubernetes side of an autoscaling round: what :class:`autoscaler.Api` asks, done for real.

Synchronous (the official client); the autoscaler runs these calls in threads. Tests give the
autoscaler a fake with the same methods instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from kopfscale import GROUP, VERSION, kube
from kopfscale.scaledapp import deployment, workload
from kopfscale.scaledapp.spec import ScaledAppSpec
from kopfscale.scaledapp.workload import REQUEST_TIMEOUT, ApiException, ScaleState, ScaleTarget, TargetError


class KubeApi:
    """The real :class:`kopfscale.scaledapp.autoscaler.Api`."""

    def find_target(self, spec: ScaledAppSpec, name: str, namespace: str) -> ScaleTarget:
        return workload.target_of(spec, name, namespace)

    def read_scale(self, target: ScaleTarget) -> ScaleState:
        return workload.read_scale(target)

    def patch_scale(self, target: ScaleTarget, replicas: int) -> ScaleState:
        return workload.patch_scale(target, replicas)

    def ensure_deployment(self, manifest: Mapping[str, Any], owner_uid: str) -> tuple[str, ScaleState]:
        return ensure_deployment(manifest, owner_uid)

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        patch_status(name, namespace, patch)

    def post_event(self, body: kopf.Body, type_: str, reason: str, message: str) -> None:
        (kopf.warn if type_ == "Warning" else kopf.info)(body, reason=reason, message=message)


def _deployment_state(obj: Any) -> ScaleState:
    """The /scale view of a Deployment object we already hold (saves a second request)."""
    spec, status = obj.spec, obj.status
    labels = (spec.selector.match_labels or {}) if spec and spec.selector else {}
    return ScaleState(
        replicas=int(spec.replicas or 0) if spec else 0,
        status_replicas=int(status.replicas or 0) if status else 0,
        selector=deployment.selector_of(labels),
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
        selector = deployment.selector_of(manifest["spec"]["selector"]["matchLabels"])
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
    wanted = manifest["metadata"]["annotations"][deployment.TEMPLATE_HASH_ANNOTATION]
    if (meta.annotations or {}).get(deployment.TEMPLATE_HASH_ANNOTATION) == wanted:
        return "unchanged", state
    patch = [
        {"op": "replace", "path": "/spec/template", "value": manifest["spec"]["template"]},
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {**(meta.annotations or {}), deployment.TEMPLATE_HASH_ANNOTATION: wanted},
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
