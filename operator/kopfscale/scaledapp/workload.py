"""The scale target: whatever a ScaledApp scales, read and written through its ``/scale`` subresource.

Every workload is read and scaled the same way, through ``/apis/{group}/{version}/namespaces/
{namespace}/{plural}/{name}/scale``: a Deployment, a StatefulSet, a Greeter, anything with a scale
subresource. The plural is found by API discovery (cached). Calls are synchronous (the shared
transport); the autoscaler runs them in threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kopfscale.kube.errors import ApiError
from kopfscale.kube.transport import Transport, path
from kopfscale.scaledapp.spec import ScaledAppSpec, ScaleTargetRef

DISCOVERY_TTL = 300.0  # seconds a positive discovery answer is trusted


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

    @property
    def scale_path(self) -> str:
        return path(self.group, self.version, self.plural, self.namespace, self.name, "scale")


@dataclass(frozen=True)
class ScaleState:
    replicas: int  # spec.replicas of the scale: what the HPA calls the current replica count
    status_replicas: int
    selector: str | None  # label selector of the pods (for resource metrics)
    problem: tuple[str, str] | None = None  # (reason, message) of an owned Deployment that is failing
    ready_replicas: int | None = None  # the owned Deployment's status.readyReplicas; None: not known
    generation: int | None = None  # the owned Deployment's metadata.generation as the watch saw it


@dataclass(frozen=True)
class PodCount:
    """The workload's Pods by its selector, as the HPA's ``getReadyPodsCount`` counts them."""

    listed: int
    ready: int  # phase Running and condition Ready True


class Discovery:
    """kind -> (plural, has a /scale subresource) per group/version, asked once in a while."""

    def __init__(self, transport: Transport, ttl: float = DISCOVERY_TTL) -> None:
        self.transport, self.ttl = transport, ttl
        self._cache: dict[tuple[str, str], tuple[float, dict[str, tuple[str, bool]]]] = {}
        self._lock = threading.Lock()

    def resources(self, group: str, version: str) -> dict[str, tuple[str, bool]]:
        key = (group, version)
        with self._lock:
            cached = self._cache.get(key)
            if cached and time.monotonic() - cached[0] < self.ttl:
                return cached[1]
        try:
            listing = self.transport.request("GET", f"/apis/{group}/{version}")
        except ApiError as e:
            if e.status == 404:
                raise TargetError(
                    "KindNotFound", f"the API {group}/{version} is not served by this cluster"
                ) from None
            raise
        entries = [r for r in listing.get("resources") or [] if isinstance(r, Mapping)]
        names = {str(r.get("name")) for r in entries}
        result: dict[str, tuple[str, bool]] = {}
        for r in entries:
            name = str(r.get("name"))
            if "/" not in name:
                result[str(r.get("kind"))] = (name, f"{name}/scale" in names)
        with self._lock:
            self._cache[key] = (time.monotonic(), result)
        return result

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def resolve(self, ref: ScaleTargetRef, namespace: str) -> ScaleTarget:
        if not ref.group:
            raise TargetError("NoScaleSubresource", f"{ref.kind} in the core API group is not supported")
        resources = self.resources(ref.group, ref.version)
        if ref.kind not in resources:
            self.forget()  # a CRD may have been installed since
            raise TargetError("KindNotFound", f"the kind {ref.kind} is not served by {ref.api_version}")
        plural, scalable = resources[ref.kind]
        if not scalable:
            raise TargetError(
                "NoScaleSubresource",
                f"{ref.kind} ({ref.api_version}) has no /scale subresource, so it cannot be scaled",
            )
        return ScaleTarget(ref.group, ref.version, plural, ref.kind, ref.name, namespace)

    def target_of(self, spec: ScaledAppSpec, name: str, namespace: str) -> ScaleTarget:
        if spec.scale_target_ref is not None:
            return self.resolve(spec.scale_target_ref, namespace)
        return ScaleTarget("apps", "v1", "deployments", "Deployment", name, namespace)


def scale_state(obj: Mapping[str, Any]) -> ScaleState:
    """A ``/scale`` object (autoscaling/v1 Scale) as the autoscaler reads it."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    selector = status.get("selector")
    return ScaleState(
        replicas=int(spec.get("replicas") or 0),
        status_replicas=int(status.get("replicas") or 0),
        selector=selector if isinstance(selector, str) and selector else None,
    )


def target_error(e: ApiError, target: ScaleTarget) -> Exception:
    """What a refused ``/scale`` request means for the ScaledApp (a TargetError), else ``e`` itself."""
    if e.status == 404:
        return TargetError("TargetNotFound", f"{target} does not exist in namespace {target.namespace}")
    if e.status == 403:
        return TargetError("Forbidden", f"not allowed to scale {target}: {e.message}")
    return e


def read_scale(transport: Transport, target: ScaleTarget) -> ScaleState:
    try:
        return scale_state(transport.request("GET", target.scale_path))
    except ApiError as e:
        raise target_error(e, target) from None


def is_running_and_ready(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status")
    if not isinstance(status, Mapping) or status.get("phase") != "Running":
        return False
    conditions = status.get("conditions")
    return any(
        isinstance(c, Mapping) and c.get("type") == "Ready" and c.get("status") == "True"
        for c in (conditions if isinstance(conditions, list) else [])
    )


def count_ready_pods(transport: Transport, namespace: str, selector: str) -> PodCount:
    """The Pods matching ``selector`` and how many are Running and Ready: one list, in the
    namespace only, filtered by the API server (no watch; only when a metric needs it)."""
    listing = transport.request("GET", path("", "v1", "pods", namespace), query=[("labelSelector", selector)])
    items = [p for p in (listing or {}).get("items") or [] if isinstance(p, Mapping)]
    return PodCount(listed=len(items), ready=sum(1 for p in items if is_running_and_ready(p)))


def patch_scale(transport: Transport, target: ScaleTarget, replicas: int) -> ScaleState:
    try:
        return scale_state(transport.merge_patch(target.scale_path, {"spec": {"replicas": replicas}}))
    except ApiError as e:
        raise target_error(e, target) from None
