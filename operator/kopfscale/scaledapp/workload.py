"""The scale target: whatever a ScaledApp scales, read and written through its ``/scale`` subresource.

Every workload is read and scaled the same way, through ``/apis/{group}/{version}/namespaces/
{namespace}/{plural}/{name}/scale``: a Deployment, a StatefulSet, a Greeter, anything with a scale
subresource. The plural is found by API discovery (cached). Calls are synchronous (the official
client); the async handlers run them in threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kubernetes

from kopfscale import kube
from kopfscale.scaledapp.spec import ScaledAppSpec, ScaleTargetRef

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
