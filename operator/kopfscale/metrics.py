"""The operator's own Prometheus metrics, served on ``/metrics`` (``prometheus-client``).

The series, for dashboards and alerts:

- ``kopfscale_reconciles_total{resource, handler, outcome}``: every run of a kopf handler
  (create/update/resume, event, timer) and how it ended: ``success``, ``retry`` (a temporary
  error: kopf retries it), ``permanent`` (kopf gives up), ``error`` (any other exception).
- ``kopfscale_reconcile_duration_seconds{resource, handler}``: how long those runs took.
- ``kopfscale_scaling_decisions_total{namespace, scaledapp, direction, mode}`` and
  ``kopfscale_metric_source_errors_total{namespace, scaledapp, source}``: the autoscaler's
  decisions and failed metric reads (use :func:`record_decision` / :func:`record_source_error`).
- Per ScaledApp, set by :func:`record_round` at the end of each autoscaling round (the report
  step) and dropped when the ScaledApp is deleted (:func:`forget`, by the ScaledApp controller):
  ``kopfscale_scaledapp_replicas``, ``_desired_replicas``, ``_min_replicas``, ``_max_replicas``
  (``{namespace, scaledapp}``),
  ``kopfscale_scaledapp_metric_value`` and ``_metric_target`` (``{..., metric}``; absent while
  a metric cannot be read), ``kopfscale_scaledapp_condition{..., condition, status}`` (1 for the
  condition's current status, 0 for the other two, as kube-state-metrics spells conditions).
- ``kopfscale_metric_queries_total{type}`` and ``kopfscale_metric_queries_saved_total{type}``:
  metric reads that made a request, and those answered by an identical read of the same or
  another ScaledApp without one (``scaledapp/sources/shared.py``; no per-tenant labels).
- ``kopfscale_autoscaler_loop_lateness_seconds``: how late autoscaling rounds start (actual
  start minus due time); a growing tail means the operator cannot keep up with its ScaledApps.

``deploy/monitoring/`` (alert rules, Grafana dashboard) is built on exactly these names; a unit
test keeps them in step.

Handlers are measured without touching them: at startup, :func:`instrument` wraps every resource
handler in kopf's registry with a timer (once; idempotent across operator restarts in one
process). Daemons (none today) are long-lived loops, not reconciles, and would be left alone.

The endpoint is off unless a port is given: ``kopfscale run --metrics-port 8081`` or the env
``KOPFSCALE_METRICS_PORT`` (0 or empty: off). It binds to loopback unless
``KOPFSCALE_METRICS_ADDRESS`` (``--metrics-address``) says otherwise; the chart sets 0.0.0.0 so
Prometheus can scrape the Pod. It is an aiohttp app on the operator's own loop, so it
starts and stops with the operator (tests run several operators in one process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from aiohttp import web
from kopf._core.intents.handlers import DaemonHandler  # no public name; needed to skip daemons
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

_SERVER_MEMO_KEY = "kopfscale_metrics_runner"
_MARK = "__kopfscale_instrumented__"

logger = logging.getLogger(__name__)

RECONCILES = Counter(
    "kopfscale_reconciles",
    "Runs of kopf handlers (create/update/resume, events, timers) by how they ended.",
    ["resource", "handler", "outcome"],
)
RECONCILE_SECONDS = Histogram(
    "kopfscale_reconcile_duration_seconds",
    "How long one run of a kopf handler took.",
    ["resource", "handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
METRIC_QUERIES = Counter(
    "kopfscale_metric_queries",
    "Metric reads (prometheus, http) that made a request; one per read shared by several ScaledApps.",
    ["type"],
)
METRIC_QUERIES_SAVED = Counter(
    "kopfscale_metric_queries_saved",
    "Metric reads answered without a request of their own: by an identical read (same request, "
    "same credentials) in flight or finished within the freshness window.",
    ["type"],
)
_APP = ("namespace", "scaledapp")
LATENESS = Histogram(
    "kopfscale_autoscaler_loop_lateness_seconds",
    "How late an autoscaling round started: actual start minus due time (pollingInterval after the last).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
STATUSES = ("True", "False", "Unknown")


# --- per ScaledApp: one small record each, turned into series when Prometheus scrapes ------------------
#
# prometheus-client keeps a child object (value, lock, labels) per series; at ~25 series per
# ScaledApp (15 of them conditions) that was ~17 KiB per ScaledApp, more than everything else the
# operator keeps for it. These series are only ever *set* from a round's outcome, so a record of
# the last outcome per ScaledApp is kept instead and the collector below writes the series out at
# scrape time (the same names, labels and values as before).
@dataclass
class _AppSeries:
    replicas: float | None = None
    desired: float | None = None
    min_replicas: float | None = None
    max_replicas: float | None = None
    metrics: tuple[tuple[str, float | None, float | None], ...] = ()  # name, value, target
    conditions: dict[str, str] = field(default_factory=dict)  # type -> status
    decisions: dict[tuple[str, str], int] = field(default_factory=dict)  # (direction, mode) -> count
    source_errors: dict[str, int] = field(default_factory=dict)  # source type -> count


_apps: dict[tuple[str, str], _AppSeries] = {}
_apps_lock = threading.Lock()


def _app(namespace: str, scaledapp: str) -> _AppSeries:
    key = (namespace, scaledapp)
    found = _apps.get(key)
    if found is None:
        found = _apps[key] = _AppSeries()
    return found


class _ScaledAppCollector:
    """Writes out every ScaledApp's series from its record, at scrape time."""

    def describe(self) -> list[Any]:
        return []  # not known in advance: the registry then calls collect() when asked

    def collect(self) -> Iterable[Any]:
        with _apps_lock:
            apps = [(key, dataclasses.replace(a, conditions=dict(a.conditions), decisions=dict(a.decisions),
                                              source_errors=dict(a.source_errors)))
                    for key, a in _apps.items()]  # fmt: skip
        gauges = {
            "replicas": GaugeMetricFamily(
                "kopfscale_scaledapp_replicas", "Replicas the scaled workload has.", labels=_APP
            ),
            "desired": GaugeMetricFamily(
                "kopfscale_scaledapp_desired_replicas", "Replicas the last decision asked for.", labels=_APP
            ),
            "min_replicas": GaugeMetricFamily(
                "kopfscale_scaledapp_min_replicas", "spec.minReplicas of the ScaledApp.", labels=_APP
            ),
            "max_replicas": GaugeMetricFamily(
                "kopfscale_scaledapp_max_replicas", "spec.maxReplicas of the ScaledApp.", labels=_APP
            ),
        }
        value = GaugeMetricFamily(
            "kopfscale_scaledapp_metric_value",
            "The last value read of a ScaledApp metric.",
            labels=[*_APP, "metric"],
        )
        target = GaugeMetricFamily(
            "kopfscale_scaledapp_metric_target",
            "The target of a ScaledApp metric (per replica for AverageValue, percent for Utilization).",
            labels=[*_APP, "metric"],
        )
        condition = GaugeMetricFamily(
            "kopfscale_scaledapp_condition",
            "Status conditions of a ScaledApp: 1 for the current status (True, False, Unknown), else 0.",
            labels=[*_APP, "condition", "status"],
        )
        decisions = CounterMetricFamily(
            "kopfscale_scaling_decisions",
            "Autoscaling decisions of ScaledApps: up, down or none (mode Observe decides but never scales).",
            labels=[*_APP, "direction", "mode"],
        )
        errors = CounterMetricFamily(
            "kopfscale_metric_source_errors",
            "Failed reads of a ScaledApp metric source (prometheus, http, cron, resource).",
            labels=[*_APP, "source"],
        )
        for (namespace, name), a in apps:
            app = [namespace, name]
            for attr, family in gauges.items():
                number = getattr(a, attr)
                if number is not None:
                    family.add_metric(app, number)
            for metric, read, wanted in a.metrics:
                if read is not None:
                    value.add_metric([*app, metric], read)
                if wanted is not None:
                    target.add_metric([*app, metric], wanted)
            for kind, status in a.conditions.items():
                for candidate in STATUSES:
                    condition.add_metric([*app, kind, candidate], 1.0 if candidate == status else 0.0)
            for (direction, mode), count in a.decisions.items():
                decisions.add_metric([*app, direction, mode], count)
            for source, count in a.source_errors.items():
                errors.add_metric([*app, source], count)
        yield from gauges.values()
        yield from (value, target, condition, decisions, errors)


REGISTRY.register(_ScaledAppCollector())  # type: ignore[arg-type]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def record_round(
    namespace: str,
    scaledapp: str,
    spec: Any,
    decision: Any,
    replicas: int,
    conditions: Iterable[Mapping[str, Any]] = (),
) -> None:
    """Set the per-ScaledApp series from one finished round (``spec``: a ``ScaledAppSpec``,
    ``decision``: a ``policy.Decision``; typed loosely so this module imports no scaledapp code)."""
    metrics = tuple(
        (
            str(m.name),
            _number(m.value) if m.error is None else None,
            _number(m.target.value) if m.target is not None else None,
        )
        for m in decision.metrics
    )
    with _apps_lock:
        a = _app(namespace, scaledapp)
        a.replicas, a.desired = replicas, decision.desired
        a.min_replicas, a.max_replicas = spec.min_replicas, spec.max_replicas
        a.metrics = metrics  # metrics removed from the spec go with it
        for c in conditions:
            a.conditions[str(c["type"])] = str(c["status"])


def set_condition(namespace: str, scaledapp: str, condition: str, status: str) -> None:
    with _apps_lock:
        _app(namespace, scaledapp).conditions[condition] = status


def record_not_ready(namespace: str, scaledapp: str) -> None:
    """A round that could not read or scale the workload: Ready is False."""
    set_condition(namespace, scaledapp, "Ready", "False")


def record_lateness(started: float, due: float | None) -> None:
    """One round's lateness (``started - due``, same clock); rounds woken early are not late."""
    if due is not None:
        LATENESS.observe(max(0.0, started - due))


def forget(namespace: str, scaledapp: str) -> None:
    """Drop every series of a deleted ScaledApp, so dashboards and alerts do not see ghosts."""
    with _apps_lock:
        _apps.pop((namespace, scaledapp), None)


def record_decision(namespace: str, scaledapp: str, current: int, desired: int, mode: str) -> None:
    direction = "up" if desired > current else "down" if desired < current else "none"
    with _apps_lock:
        counts = _app(namespace, scaledapp).decisions
        counts[(direction, mode)] = counts.get((direction, mode), 0) + 1


def record_source_error(namespace: str, scaledapp: str, source: str) -> None:
    with _apps_lock:
        counts = _app(namespace, scaledapp).source_errors
        counts[source] = counts.get(source, 0) + 1


def record_metric_query(source_type: str, *, saved: bool) -> None:
    """One metric read of a shareable source: a request made, or one saved by sharing."""
    (METRIC_QUERIES_SAVED if saved else METRIC_QUERIES).labels(source_type).inc()


OUTCOMES = ("success", "retry", "permanent", "error")


def outcome_of(error: BaseException | None) -> str:
    if error is None:
        return "success"
    if isinstance(error, kopf.TemporaryError):
        return "retry"
    if isinstance(error, kopf.PermanentError):
        return "permanent"
    return "error"


def _timed(fn: Callable[..., Any], resource: str, handler: str) -> Callable[..., Any]:
    """``fn`` wrapped to count and time each run; sync stays sync and async stays async (kopf
    runs sync handlers in its thread pool and tells them apart through ``__wrapped__``)."""

    # Resolved once, not per run: a label lookup takes a lock and a dict walk, per watch event.
    seconds = RECONCILE_SECONDS.labels(resource, handler)
    outcomes = {outcome: RECONCILES.labels(resource, handler, outcome) for outcome in OUTCOMES}

    def observe(started: float, error: BaseException | None) -> None:
        seconds.observe(time.monotonic() - started)
        outcomes[outcome_of(error)].inc()

    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                result = await fn(*args, **kwargs)
            except asyncio.CancelledError:
                raise
            except BaseException as e:
                observe(started, e)
                raise
            observe(started, None)
            return result

        wrapper = async_wrapper
    else:

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                result = fn(*args, **kwargs)
            except BaseException as e:
                observe(started, e)
                raise
            observe(started, None)
            return result

        wrapper = sync_wrapper
    setattr(wrapper, _MARK, True)
    return wrapper


def instrument(registry: kopf.OperatorRegistry) -> int:
    """Wrap the registry's resource handlers (not daemons) with :func:`_timed`; returns how many.

    kopf has no middleware hook, so this swaps each handler for a copy whose ``fn`` is wrapped
    (handlers are frozen dataclasses; their ids, and so kopf's progress records, are unchanged).
    """
    count = 0
    for sub in (registry._changing, registry._watching, registry._spawning):
        handlers: list[Any] = sub._handlers
        for i, handler in enumerate(handlers):
            if isinstance(handler, DaemonHandler) or getattr(handler.fn, _MARK, False):
                continue
            selector = handler.selector
            names = (selector.plural, selector.any_name, selector.kind) if selector is not None else ()
            resource = next((str(n) for n in names if n), "unknown")
            handlers[i] = dataclasses.replace(handler, fn=_timed(handler.fn, resource, str(handler.id)))
            count += 1
    return count


async def _serve_metrics(_: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest, REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start(memo: kopf.Memo, port: int | None, address: str) -> None:
    """Time every handler, and serve /metrics on ``address:port`` (none when the port is None);
    called by the composition root (``app.wire``) with the operator's settings."""
    instrument(kopf.get_default_registry())
    if port is None:
        return
    app = web.Application()
    app.router.add_get("/metrics", _serve_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    memo[_SERVER_MEMO_KEY] = runner
    logger.info(f"Serving Prometheus metrics on http://{address}:{port}/metrics")


@kopf.on.cleanup()
async def stop_metrics(memo: kopf.Memo, **_: Any) -> None:
    runner = memo.get(_SERVER_MEMO_KEY)
    if runner is not None:
        await runner.cleanup()
