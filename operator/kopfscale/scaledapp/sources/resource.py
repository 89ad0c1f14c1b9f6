"""``type: resource`` — CPU or memory of the scaled workload's pods, as the HPA computes it.

PodMetrics come from ``metrics.k8s.io/v1beta1`` (metrics-server), requests from the Pods' specs,
both listed by the workload's selector. The Pods are grouped as the HPA's replica calculator
groups them (:func:`group_pods`, after ``groupPods`` in kubernetes' replica_calculator.go) into a
:class:`PodSample`; the value is computed over the ready ones, and the policy counts the others
(``policy.propose_pods``): Pods without metrics or not ready are set aside, then counted at 0 % of
their request on a scale-up and at 100 % on a scale-down.

* ``target.type: Utilization`` — ``int(100 * sum(usage) / sum(requests))`` over the ready pods,
  in whole percent of the request. Every container of every listed pod (including native
  sidecars, i.e. init containers with ``restartPolicy: Always``) must request the resource, or a
  pod-level request must be set, otherwise the metric is unusable and the reading is an error
  (the HPA behaves the same way).
* ``target.type: AverageValue`` — mean usage per ready pod in base units: cores for cpu, bytes
  for memory (summed in milli-units and truncated, as the HPA does).
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import kubernetes

from kopfscale.kube.errors import ApiError
from kopfscale.kube.transport import Transport, path, transport
from kopfscale.scaledapp.sources.base import (
    Config,
    Meaning,
    PodGroup,
    PodSample,
    Scaler,
    SourceContext,
    SourceError,
    timeout_of,
)

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


def milli(quantity: decimal.Decimal) -> int:
    """A quantity in milli-units, rounded up: the HPA sums ``Quantity.MilliValue()``."""
    return int((quantity * 1000).to_integral_value(rounding=decimal.ROUND_CEILING))


def _pod_usage(pod_metrics: Mapping[str, Any], resource: str) -> int | None:
    """The Pod's usage in milli-units, summed over its containers; None when a container has no
    usage for the resource (or there is none): the HPA then has no metric for the Pod."""
    containers = pod_metrics.get("containers")
    if not isinstance(containers, list) or not containers:
        return None
    total = 0
    for container in containers:
        usage = container.get("usage") if isinstance(container, Mapping) else None
        if not isinstance(usage, Mapping) or resource not in usage:
            return None
        total += milli(parse_quantity(usage[resource], f"{resource} usage of pod {_name(pod_metrics)}"))
    return total


def _quantity(raw: Any, where: str) -> int:
    return milli(parse_quantity(raw, where))


def _pod_request(pod: Mapping[str, Any], resource: str) -> int:
    """The Pod's request in milli-units (the HPA's ``calculateRequests``): its pod-level request
    when ``spec.resources.requests`` sets cpu or memory (plus ``spec.overhead``), else the sum over
    its containers and native sidecars, each of which must request the resource."""
    spec = pod.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    pod_resources = spec.get("resources")
    pod_requests = pod_resources.get("requests") if isinstance(pod_resources, Mapping) else None
    if isinstance(pod_requests, Mapping) and any(r in pod_requests for r in RESOURCES):
        return _pod_level_request(pod, spec, pod_requests, resource)
    containers = [c for c in spec.get("containers") or [] if isinstance(c, Mapping)]
    # Native sidecars (restartable init containers) run alongside and count, like in the HPA.
    containers += [
        c
        for c in spec.get("initContainers") or []
        if isinstance(c, Mapping) and c.get("restartPolicy") == "Always"
    ]
    if not containers:
        raise SourceError(f"pod {_name(pod)} has no containers")
    total = 0
    for container in containers:
        resources = container.get("resources")
        requests = resources.get("requests") if isinstance(resources, Mapping) else None
        if not isinstance(requests, Mapping) or requests.get(resource) is None:
            raise SourceError(
                f"missing request for {resource} in container {container.get('name', '?')} "
                f"of pod {_name(pod)}; Utilization targets need requests on every container"
            )
        total += _quantity(requests[resource], f"{resource} request of pod {_name(pod)}")
    return total


def _pod_level_request(
    pod: Mapping[str, Any], spec: Mapping[str, Any], pod_requests: Mapping[str, Any], resource: str
) -> int:
    """Pod-level resources (KEP-2837): the pod's own request for the resource, plus its overhead;
    for a resource it does not set at pod level, what its containers and native sidecars request
    (the HPA's aggregate also weighs ordinary init containers: only one requesting more than the
    whole Pod would tell the two apart)."""
    where = f"{resource} request of pod {_name(pod)}"
    if resource in pod_requests:
        total = _quantity(pod_requests[resource], where)
    else:
        running = [c for c in spec.get("containers") or [] if isinstance(c, Mapping)] + [
            c
            for c in spec.get("initContainers") or []
            if isinstance(c, Mapping) and c.get("restartPolicy") == "Always"
        ]
        found = [
            c["resources"]["requests"][resource]
            for c in running
            if isinstance(c.get("resources"), Mapping)
            and isinstance(c["resources"].get("requests"), Mapping)
            and resource in c["resources"]["requests"]
        ]
        if not found:
            raise SourceError(f"missing pod-level request for {resource} in pod {_name(pod)}")
        total = sum(_quantity(q, where) for q in found)
    overhead = spec.get("overhead")
    if isinstance(overhead, Mapping) and resource in overhead:
        total += _quantity(overhead[resource], f"{resource} overhead of pod {_name(pod)}")
    return total


#: The kube-controller-manager defaults the HPA reads its Pods with (a cluster can change them):
#: --horizontal-pod-autoscaler-cpu-initialization-period and
#: --horizontal-pod-autoscaler-initial-readiness-delay.
CPU_INITIALIZATION_PERIOD = datetime.timedelta(minutes=5)
INITIAL_READINESS_DELAY = datetime.timedelta(seconds=30)


def _time(raw: Any) -> datetime.datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(raw: Any) -> datetime.timedelta | None:
    """A Go duration string as metrics-server writes a PodMetrics ``window`` ("15s", "1m0s",
    "10.5s"); None when it is not one."""
    if not isinstance(raw, str) or not raw:
        return None
    parts = _DURATION_PART.findall(raw)
    if not parts or "".join(n + u for n, u in parts) != raw:
        return None
    return datetime.timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


def _ready_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    status = pod.get("status")
    conditions = status.get("conditions") if isinstance(status, Mapping) else None
    for condition in conditions if isinstance(conditions, list) else []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition
    return None


def cpu_unready(
    pod: Mapping[str, Any],
    pod_metrics: Mapping[str, Any],
    now: datetime.datetime,
    initialization: datetime.timedelta = CPU_INITIALIZATION_PERIOD,
    readiness_delay: datetime.timedelta = INITIAL_READINESS_DELAY,
) -> bool:
    """Whether a cpu sample of a Running Pod is set aside as the HPA's ``groupPods`` does: no Ready
    condition or start time; within the CPU initialization period (5 min after start), not Ready
    or no full metric window since it last changed readiness; after it, not Ready and never was
    (it turned unready within the initial readiness delay, 30 s, of its start)."""
    condition = _ready_condition(pod)
    status = pod.get("status")
    started = _time(status.get("startTime")) if isinstance(status, Mapping) else None
    if condition is None or started is None:
        return True
    never = datetime.datetime.min.replace(tzinfo=datetime.UTC)  # Go's zero time, for what is absent
    transition = _time(condition.get("lastTransitionTime")) or never
    not_ready = condition.get("status") == "False"
    if started + initialization > now:
        sampled = _time(pod_metrics.get("timestamp")) or never
        window = go_duration(pod_metrics.get("window")) or datetime.timedelta(0)
        return not_ready or sampled < transition + window
    return not_ready and started + readiness_delay > transition


def _phase(pod: Mapping[str, Any]) -> Any:
    status = pod.get("status")
    return status.get("phase") if isinstance(status, Mapping) else None


def group_pods(
    resource: str,
    target_type: str,
    pod_metrics: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
    initialization: datetime.timedelta = CPU_INITIALIZATION_PERIOD,
    readiness_delay: datetime.timedelta = INITIAL_READINESS_DELAY,
) -> PodSample:
    """PodMetrics items and Pod items (API JSON) grouped as the HPA groups them. Pure.

    Being deleted or Failed: ignored. Pending: unready. No metrics: missing. cpu: see
    :func:`cpu_unready`. Every other Pod counts (PodMetrics of Pods not listed are dropped).
    """
    listed = [p for p in pods if isinstance(p, Mapping)]
    sampled = [m for m in pod_metrics if isinstance(m, Mapping)]
    if not listed:  # the HPA's "no pods returned by selector" (it checks the metrics first)
        raise SourceError("no pods match the workload's selector")
    if not sampled:
        raise SourceError(
            f"no {resource} metrics for any pod of the workload ({len(listed)} pods); "
            "is metrics-server running?"
        )
    utilization = target_type == "Utilization"
    metrics_by_name = {_name(m): m for m in sampled}
    groups: dict[str, tuple[list[int], list[int]]] = {
        "ready": ([], []),
        "unready": ([], []),
        "missing": ([], []),
    }
    ignored = 0
    for pod in listed:
        # The HPA computes every listed Pod's request, and any missing one makes it unusable.
        request = _pod_request(pod, resource) if utilization else 0
        metadata = pod.get("metadata")
        if (isinstance(metadata, Mapping) and metadata.get("deletionTimestamp") is not None) or _phase(
            pod
        ) == "Failed":
            ignored += 1
            continue
        item = metrics_by_name.get(_name(pod))
        usage = _pod_usage(item, resource) if item is not None else None
        if _phase(pod) == "Pending":
            kind = "unready"
        elif item is None or usage is None:
            kind = "missing"
        elif resource == "cpu" and cpu_unready(pod, item, now, initialization, readiness_delay):
            kind = "unready"
        else:
            kind = "ready"
        groups[kind][0].append(usage or 0)
        groups[kind][1].append(request)
    ready, unready, missing = (PodGroup(tuple(u), tuple(r)) for u, r in groups.values())
    if ready.count == 0:
        raise SourceError(
            f"no {resource} metrics for any ready pod of the workload ({len(listed)} pods: "
            f"{unready.count} not ready, {missing.count} without metrics, {ignored} deleted or failed)"
        )
    if utilization and sum(ready.requests) == 0:
        raise SourceError(f"the pods' {resource} requests sum to zero; utilization is undefined")
    return PodSample(utilization, ready, unready, missing, ignored)


def compute_value(
    resource: str,
    target_type: str,
    pod_metrics: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
) -> float:
    """The metric value over the ready Pods (:func:`group_pods`). Pure."""
    return group_pods(resource, target_type, pod_metrics, pods, now).value


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

    async def read(self, config: ResourceConfig, ctx: SourceContext) -> PodSample:
        return await read_pods(self.transport, config, ctx)


async def read_pods(api: Transport, cfg: ResourceConfig, ctx: SourceContext) -> PodSample:
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
    return group_pods(
        cfg.resource, cfg.target_type, _items(metrics_doc, "PodMetrics"), _items(pods_doc, "Pod"), ctx.now()
    )


SCALER = ResourceScaler()
