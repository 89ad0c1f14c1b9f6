"""The operator's own Prometheus metrics, served on ``/metrics`` (``prometheus-client``).

The series, for dashboards and alerts:

- ``kopfscale_reconciles_total{resource, handler, outcome}``: every run of a kopf handler
  (create/update/resume, event, timer) and how it ended: ``success``, ``retry`` (a temporary
  error: kopf retries it), ``permanent`` (kopf gives up), ``error`` (any other exception).
- ``kopfscale_reconcile_duration_seconds{resource, handler}``: how long those runs took.
- ``kopfscale_scaling_decisions_total{namespace, scaledapp, direction, mode}`` and
  ``kopfscale_metric_source_errors_total{namespace, scaledapp, source}``: the autoscaler's
  decisions and failed metric reads (use :func:`record_decision` / :func:`record_source_error`).

Handlers are measured without touching them: at startup, :func:`instrument` wraps every resource
handler in kopf's registry with a timer (once; idempotent across operator restarts in one
process). Daemons are long-lived loops, not reconciles, and are left alone.

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
import os
import time
from collections.abc import Callable
from typing import Any

import kopf
from aiohttp import web
from kopf._core.intents.handlers import DaemonHandler  # no public name; needed to skip daemons
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

PORT_ENV = "KOPFSCALE_METRICS_PORT"
ADDRESS_ENV = "KOPFSCALE_METRICS_ADDRESS"
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


def record_decision(namespace: str, scaledapp: str, current: int, desired: int, mode: str) -> None:
    direction = "up" if desired > current else "down" if desired < current else "none"
    SCALING_DECISIONS.labels(namespace, scaledapp, direction, mode).inc()


def record_source_error(namespace: str, scaledapp: str, source: str) -> None:
    SOURCE_ERRORS.labels(namespace, scaledapp, source).inc()


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


def configured_port() -> int | None:
    raw = os.environ.get(PORT_ENV, "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        raise kopf.PermanentError(f"{PORT_ENV}={raw!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise kopf.PermanentError(f"{PORT_ENV}={raw!r} is not a port number (0-65535)")
    return port or None


async def _serve_metrics(_: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest, REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@kopf.on.startup()
async def start_metrics(memo: kopf.Memo, **_: Any) -> None:
    instrument(kopf.get_default_registry())
    port = configured_port()
    if port is None:
        return
    app = web.Application()
    app.router.add_get("/metrics", _serve_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    address = os.environ.get(ADDRESS_ENV) or "127.0.0.1"
    await web.TCPSite(runner, address, port).start()
    memo[_SERVER_MEMO_KEY] = runner
    logger.info(f"Serving Prometheus metrics on http://{address}:{port}/metrics")


@kopf.on.cleanup()
async def stop_metrics(memo: kopf.Memo, **_: Any) -> None:
    runner = memo.get(_SERVER_MEMO_KEY)
    if runner is not None:
        await runner.cleanup()
