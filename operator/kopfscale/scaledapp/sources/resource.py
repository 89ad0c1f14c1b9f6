"""``type: resource`` — CPU or memory of the scaled workload's pods, as the HPA computes it.

PodMetrics come from ``metrics.k8s.io/v1beta1`` (metrics-server), requests from the Pods' specs.
Pods count when they have metrics, are not being deleted and have not failed (like the HPA).

* ``target.type: Utilization`` — ``100 * sum(usage) / sum(requests)`` over the counted pods, in
  percent of the request. Every container of a counted pod (including native sidecars, i.e. init
  containers with ``restartPolicy: Always``) must request the resource, otherwise the metric is
  unusable and the reading is an error (the HPA behaves the same way).
* ``target.type: AverageValue`` — mean usage per counted pod in base units: cores for cpu, bytes
  for memory.
"""

from __future__ import annotations

import asyncio
import decimal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import kubernetes

from kopfscale.kube.errors import ApiError
from kopfscale.kube.transport import Transport, path, transport
from kopfscale.scaledapp.sources.base import Config, Meaning, Scaler, SourceContext, SourceError, timeout_of

RESOURCES = ("cpu", "memory")
TARGET_TYPES = ("Utilization", "AverageValue")

# The official client's quantity parser ("250m", "12345n", "128Mi" → Decimal in base units); untyped upstream.
_parse_quantity = cast(Callable[[str | int | float], decimal.Decimal], kubernetes.utils.parse_quantity)


@dataclass(frozen=True)
class ResourceConfig:
    resource: str  # cpu | memory
    target_type: str  # Utilization | AverageValue
    timeout: float = 3.0  # seconds: the client-side timeout of the API calls


def parse_config(config: Config, target: Any, timeout: float = 3.0) -> ResourceConfig:
    resource = config.get("name")
    if resource not in RESOURCES:
        raise SourceError(f"name must be one of {', '.join(RESOURCES)}, got {resource!r}")
    target_type = target.get("type") if isinstance(target, Mapping) else target
    if target_type not in TARGET_TYPES:
        raise SourceError(f"target.type must be one of {', '.join(TARGET_TYPES)}, got {target_type!r}")
    return ResourceConfig(resource=resource, target_type=target_type, timeout=timeout)


def parse_quantity(raw: Any, where: str) -> decimal.Decimal:
    """A Kubernetes quantity ("250m", "12345n", "128Mi", 2) in base units, via the official client."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise SourceError(f"{where}: {raw!r} is not a Kubernetes quantity")
    try:
        value = _parse_quantity(raw)
    except (ValueError, TypeError, ArithmeticError):
        raise SourceError(f"{where}: {raw!r} is not a Kubernetes quantity") from None
    if not value.is_finite() or value < 0:
        raise SourceError(f"{where}: {raw!r} is not a non-negative quantity")
    return value


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return name if isinstance(name, str) else "?"


def _pod_usage(pod_metrics: Mapping[str, Any], resource: str) -> decimal.Decimal:
    containers = pod_metrics.get("containers")
    if not isinstance(containers, list) or not containers:
        raise SourceError(f"PodMetrics {_name(pod_metrics)} has no container metrics")
    total = decimal.Decimal(0)
    for container in containers:
        usage = container.get("usage") if isinstance(container, Mapping) else None
        if not isinstance(usage, Mapping) or resource not in usage:
            cname = container.get("name", "?") if isinstance(container, Mapping) else "?"
            raise SourceError(f"PodMetrics {_name(pod_metrics)} has no {resource} usage of container {cname}")
        total += parse_quantity(usage[resource], f"{resource} usage of pod {_name(pod_metrics)}")
    return total


def _pod_request(pod: Mapping[str, Any], resource: str) -> decimal.Decimal:
    spec = pod.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    containers = [c for c in spec.get("containers") or [] if isinstance(c, Mapping)]
    # Native sidecars (restartable init containers) run alongside and count, like in the HPA.
    containers += [
        c
        for c in spec.get("initContainers") or []
        if isinstance(c, Mapping) and c.get("restartPolicy") == "Always"
    ]
    if not containers:
        raise SourceError(f"pod {_name(pod)} has no containers")
    total = decimal.Decimal(0)
    for container in containers:
        resources = container.get("resources")
        requests = resources.get("requests") if isinstance(resources, Mapping) else None
        if not isinstance(requests, Mapping) or requests.get(resource) is None:
            raise SourceError(
                f"missing request for {resource} in container {container.get('name', '?')} "
                f"of pod {_name(pod)}; Utilization targets need requests on every container"
            )
        total += parse_quantity(requests[resource], f"{resource} request of pod {_name(pod)}")
    return total


def _counts(pod: Mapping[str, Any]) -> bool:
    metadata = pod.get("metadata")
    status = pod.get("status")
    deleting = isinstance(metadata, Mapping) and metadata.get("deletionTimestamp") is not None
    failed = isinstance(status, Mapping) and status.get("phase") == "Failed"
    return not deleting and not failed


def compute_value(
    resource: str,
    target_type: str,
    pod_metrics: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
) -> float:
    """The metric value from PodMetrics items and Pod items (both as API JSON dicts). Pure."""
    pods_by_name = {_name(pod): pod for pod in pods if isinstance(pod, Mapping)}
    usage_total = decimal.Decimal(0)
    request_total = decimal.Decimal(0)
    counted = 0
    for item in pod_metrics:
        if not isinstance(item, Mapping):
            continue
        pod = pods_by_name.get(_name(item))
        if pod is None or not _counts(pod):
            continue  # a pod gone or going away since metrics-server sampled it
        usage_total += _pod_usage(item, resource)
        if target_type == "Utilization":
            request_total += _pod_request(pod, resource)
        counted += 1

    if counted == 0:
        raise SourceError(
            f"no {resource} metrics for any running pod of the workload "
            f"({len(pods)} pods, {len(pod_metrics)} with metrics); is metrics-server running?"
        )
    if target_type == "Utilization":
        if request_total == 0:
            raise SourceError(f"the pods' {resource} requests sum to zero; utilization is undefined")
        return float(100 * usage_total / request_total)
    return float(usage_total / counted)


def _items(doc: Any, what: str) -> list[Mapping[str, Any]]:
    items = doc.get("items") if isinstance(doc, Mapping) else None
    if not isinstance(items, list):
        raise SourceError(f"the {what} list response has no items")
    return items


def describe(config: Config) -> str:
    name = config.get("name")
    return f"resource {name}" if isinstance(name, str) else "resource"


class ResourceScaler(Scaler[ResourceConfig]):
    """CPU or memory of the workload's pods, averaged over them (an HPA Resource metric)."""

    type = "resource"
    meaning = Meaning.PER_POD

    def __init__(self, api: Transport | None = None) -> None:
        self.transport = api or transport()

    def parse(self, config: Config, target_type: str | None) -> ResourceConfig:
        return parse_config(config, target_type, timeout_of(config))

    def describe(self, config: Config) -> str:
        return describe(config)

    async def read(self, config: ResourceConfig, ctx: SourceContext) -> float:
        return await read_pods(self.transport, config, ctx)


async def read_pods(api: Transport, cfg: ResourceConfig, ctx: SourceContext) -> float:
    """List the workload's PodMetrics and Pods (in threads: the transport is sync), then compute."""
    if not ctx.pod_selector:
        raise SourceError("the workload has no pod selector to find its pods by")
    # read() enforces the timeout on the await; the request timeout makes the worker threads
    # give up too instead of lingering on a hung connection.
    thread_timeout = cfg.timeout
    query = [("labelSelector", ctx.pod_selector)]

    def list_of(group: str, version: str, plural: str) -> Any:
        return api.request(
            "GET", path(group, version, plural, ctx.namespace), query=query, timeout=thread_timeout
        )

    try:
        metrics_doc, pods_doc = await asyncio.gather(
            asyncio.to_thread(list_of, "metrics.k8s.io", "v1beta1", "pods"),
            asyncio.to_thread(list_of, "", "v1", "pods"),
        )
    except ApiError as e:
        if e.status == 404:
            raise SourceError(
                "metrics.k8s.io/v1beta1 is not served (HTTP 404); install metrics-server"
            ) from None
        if e.status is None:
            raise SourceError(f"Kubernetes API request failed: {e.message}") from None
        raise SourceError(f"Kubernetes API error: HTTP {e.status} {e.reason}") from None
    except kubernetes.config.ConfigException as e:
        raise SourceError(f"no Kubernetes API configuration: {e}") from None
    return compute_value(
        cfg.resource, cfg.target_type, _items(metrics_doc, "PodMetrics"), _items(pods_doc, "Pod")
    )


SCALER = ResourceScaler()
