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
from typing import Any

import kopf
from aiohttp import web
from kopf._core.intents.handlers import DaemonHandler  # no public name; needed to skip daemons
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

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
SCALING_DECISIONS = Counter(
    "kopfscale_scaling_decisions",
    "Autoscaling decisions of ScaledApps: up, down or none (mode Observe decides but never scales).",
    ["namespace", "scaledapp", "direction", "mode"],
)
SOURCE_ERRORS = Counter(
    "kopfscale_metric_source_errors",
    "Failed reads of a ScaledApp metric source (prometheus, http, cron, resource).",
    ["namespace", "scaledapp", "source"],
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


_APP = ["namespace", "scaledapp"]
REPLICAS = Gauge("kopfscale_scaledapp_replicas", "Replicas the scaled workload has.", _APP)
DESIRED = Gauge("kopfscale_scaledapp_desired_replicas", "Replicas the last decision asked for.", _APP)
MIN_REPLICAS = Gauge("kopfscale_scaledapp_min_replicas", "spec.minReplicas of the ScaledApp.", _APP)
MAX_REPLICAS = Gauge("kopfscale_scaledapp_max_replicas", "spec.maxReplicas of the ScaledApp.", _APP)
METRIC_VALUE = Gauge(
    "kopfscale_scaledapp_metric_value", "The last value read of a ScaledApp metric.", [*_APP, "metric"]
)
METRIC_TARGET = Gauge(
    "kopfscale_scaledapp_metric_target",
    "The target of a ScaledApp metric (per replica for AverageValue, percent for Utilization).",
    [*_APP, "metric"],
)
CONDITION = Gauge(
    "kopfscale_scaledapp_condition",
    "Status conditions of a ScaledApp: 1 for the current status (True, False, Unknown), else 0.",
    [*_APP, "condition", "status"],
)
LATENESS = Histogram(
    "kopfscale_autoscaler_loop_lateness_seconds",
    "How late an autoscaling round started: actual start minus due time (pollingInterval after the last).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
STATUSES = ("True", "False", "Unknown")

#: The label values each ScaledApp has set, so that :func:`forget` removes exactly those.
_series: dict[tuple[str, str], dict[str, set[tuple[str, ...]]]] = {}
_series_lock = threading.Lock()


def _track(key: tuple[str, str], family: str, labels: tuple[str, ...]) -> None:
    with _series_lock:
        _series.setdefault(key, {}).setdefault(family, set()).add(labels)


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
    """Set the per-ScaledApp gauges from one finished round (``spec``: a ``ScaledAppSpec``,
    ``decision``: a ``policy.Decision``; typed loosely so this module imports no scaledapp code)."""
    key = (namespace, scaledapp)
    REPLICAS.labels(namespace, scaledapp).set(replicas)
    DESIRED.labels(namespace, scaledapp).set(decision.desired)
    MIN_REPLICAS.labels(namespace, scaledapp).set(spec.min_replicas)
    MAX_REPLICAS.labels(namespace, scaledapp).set(spec.max_replicas)
    seen: set[tuple[str, ...]] = set()
    for m in decision.metrics:
        labels: tuple[str, ...] = (namespace, scaledapp, str(m.name))
        seen.add(labels)
        value = _number(m.value) if m.error is None else None
        if value is None:
            if _has(METRIC_VALUE, labels):
                METRIC_VALUE.remove(*labels)
        else:
            METRIC_VALUE.labels(*labels).set(value)
        target = _number(m.target.value) if m.target is not None else None
        if target is not None:
            METRIC_TARGET.labels(*labels).set(target)
        _track(key, "metric", labels)
    # Metrics removed from the spec: drop their series.
    with _series_lock:
        stale = _series.get(key, {}).get("metric", set()) - seen
        if stale:
            _series[key]["metric"] -= stale
    for stale_labels in stale:
        for family in (METRIC_VALUE, METRIC_TARGET):
            if _has(family, stale_labels):
                family.remove(*stale_labels)
    for condition in conditions:
        set_condition(namespace, scaledapp, str(condition["type"]), str(condition["status"]))


def set_condition(namespace: str, scaledapp: str, condition: str, status: str) -> None:
    for candidate in STATUSES:
        labels = (namespace, scaledapp, condition, candidate)
        CONDITION.labels(*labels).set(1 if candidate == status else 0)
        _track((namespace, scaledapp), "condition", labels)


def record_not_ready(namespace: str, scaledapp: str) -> None:
    """A round that could not read or scale the workload: Ready is False."""
    set_condition(namespace, scaledapp, "Ready", "False")


def record_lateness(started: float, due: float | None) -> None:
    """One round's lateness (``started - due``, same clock); rounds woken early are not late."""
    if due is not None:
        LATENESS.observe(max(0.0, started - due))


def _has(family: Any, labels: tuple[str, ...]) -> bool:
    return labels in family._metrics  # prometheus_client keeps children in this dict


def forget(namespace: str, scaledapp: str) -> None:
    """Drop every series of a deleted ScaledApp, so dashboards and alerts do not see ghosts."""
    key = (namespace, scaledapp)
    with _series_lock:
        tracked = _series.pop(key, {})
    app = (namespace, scaledapp)
    for family in (REPLICAS, DESIRED, MIN_REPLICAS, MAX_REPLICAS):
        if _has(family, app):
            family.remove(*app)
    for labels in tracked.get("metric", set()):
        for family in (METRIC_VALUE, METRIC_TARGET):
            if _has(family, labels):
                family.remove(*labels)
    for labels in tracked.get("condition", set()):
        if _has(CONDITION, labels):
            CONDITION.remove(*labels)
    for counter in (SCALING_DECISIONS, SOURCE_ERRORS):
        for counted in [ls for ls in list(counter._metrics) if ls[:2] == app]:
            counter.remove(*counted)


def record_decision(namespace: str, scaledapp: str, current: int, desired: int, mode: str) -> None:
    direction = "up" if desired > current else "down" if desired < current else "none"
    SCALING_DECISIONS.labels(namespace, scaledapp, direction, mode).inc()


def record_source_error(namespace: str, scaledapp: str, source: str) -> None:
    SOURCE_ERRORS.labels(namespace, scaledapp, source).inc()


def record_metric_query(source_type: str, *, saved: bool) -> None:
    """One metric read of a shareable source: a request made, or one saved by sharing."""
    (METRIC_QUERIES_SAVED if saved else METRIC_QUERIES).labels(source_type).inc()


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

    def observe(started: float, error: BaseException | None) -> None:
        RECONCILE_SECONDS.labels(resource, handler).observe(time.monotonic() - started)
        RECONCILES.labels(resource, handler, outcome_of(error)).inc()

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
