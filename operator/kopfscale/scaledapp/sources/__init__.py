"""Metric sources of the ScaledApp autoscaler: one module per ``type``, one registry (KEDA's ``pkg/scalers``).

How the autoscaler uses them::

    source = parse_source(raw_metric)         # once per spec generation; SourceError if unusable
    reading = await read(name, source, ctx)   # every round; never raises
    if reading.error is None:
        use(reading.value)

``async with opened():`` (the operator's startup/cleanup) opens and closes every scaler's client.
Adding a source: a module with a :class:`Scaler`, one line in :data:`REGISTRY`, one block in
``crds/scaledapp.yaml`` (``metrics[].type`` enum and the ``<type>`` block; a unit test fails when
they disagree), and a section in docs/metric-sources.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from kopfscale.scaledapp.sources import cron, fetch, http_json, prometheus, resource, shared
from kopfscale.scaledapp.sources.base import (
    DEFAULT_TIMEOUT,
    Meaning,
    MetricReading,
    PodGroup,
    PodSample,
    Scaler,
    SourceContext,
    SourceError,
    timeout_of,
)
from kopfscale.settings import OperatorSettings
from kopfscale.settings import load as load_settings

__all__ = [
    "DEFAULT_TIMEOUT",
    "REGISTRY",
    "Meaning",
    "MetricReading",
    "PodGroup",
    "PodSample",
    "Scaler",
    "SourceContext",
    "SourceError",
    "SourceSpec",
    "close_all",
    "open_all",
    "opened",
    "parse_source",
    "read",
    "read_metric",
]

logger = logging.getLogger(__name__)

#: Every source type, by the ``metrics[].type`` that selects it.
REGISTRY: dict[str, Scaler[Any]] = {
    scaler.type: scaler for scaler in (prometheus.SCALER, http_json.SCALER, cron.SCALER, resource.SCALER)
}


@dataclass(frozen=True)
class SourceSpec:
    """A metric's source, parsed once per spec generation: what every round reads with."""

    scaler: Scaler[Any]
    config: Any  # the scaler's own typed config
    label: str  # the scaler's description: the prefix of every error of this metric
    timeout: float  # seconds for the whole read

    @property
    def type(self) -> str:
        return self.scaler.type

    @property
    def meaning(self) -> Meaning:
        return self.scaler.meaning


def parse_source(metric: Any) -> SourceSpec:
    """The source of one ``metrics[]`` item; :class:`SourceError` (prefixed with its label) if unusable."""
    if not isinstance(metric, Mapping):
        raise SourceError(f"metric spec must be a mapping, got {type(metric).__name__}")
    kind = metric.get("type")
    if not isinstance(kind, str) or kind not in REGISTRY:
        raise SourceError(f"unknown metric type {kind!r}, expected one of: {', '.join(sorted(REGISTRY))}")
    scaler = REGISTRY[kind]
    config = metric.get(kind)
    if not isinstance(config, Mapping):
        raise SourceError(f"{kind}: the {kind!r} section is missing or is not a mapping")
    label = scaler.describe(config)
    target = metric.get("target")
    target_type = target.get("type") if isinstance(target, Mapping) else None
    try:
        return SourceSpec(scaler, scaler.parse(config, target_type), label, timeout_of(config))
    except SourceError as e:
        raise SourceError(f"{label}: {e}") from None


async def read(name: str, source: SourceSpec, ctx: SourceContext) -> MetricReading:
    """Read one metric within its timeout. Never raises: failures come back as ``.error``.

    A read identical to another ScaledApp's (same request, same credentials) in flight or just
    done is answered by that one (:mod:`shared`; ``ctx.polling_interval`` bounds how old).
    """
    label = source.label
    try:
        async with asyncio.timeout(source.timeout):
            value = await shared.FLIGHTS.read(source.scaler, source.config, source.timeout, ctx)
        pods = value if isinstance(value, PodSample) else None
        if pods is not None:
            value = pods.value
        if not isinstance(value, float | int) or not math.isfinite(value):
            raise SourceError(f"read a non-finite value {value!r}")
        return MetricReading(name=name, value=float(value), pods=pods)
    except SourceError as e:
        return MetricReading(name=name, error=f"{label}: {e}")
    except TimeoutError:
        return MetricReading(name=name, error=f"{label}: timed out after {source.timeout:g}s")
    except aiohttp.ClientError as e:
        return MetricReading(name=name, error=f"{label}: request failed: {fetch.client_error(e)}")
    except Exception as e:
        logger.exception("Unexpected failure reading metric %r (%s)", name, label)
        return MetricReading(name=name, error=f"{label}: unexpected {type(e).__name__}: {e}")


async def read_metric(metric: Any, ctx: SourceContext) -> MetricReading:
    """Parse and read a raw ``metrics[]`` item in one go (tools and tests); never raises."""
    raw_name = metric.get("name") if isinstance(metric, Mapping) else None
    name = raw_name if isinstance(raw_name, str) else ""
    try:
        source = parse_source(metric)
    except SourceError as e:
        return MetricReading(name=name, error=str(e))
    return await read(name, source, ctx)


async def open_all(settings: OperatorSettings | None = None) -> None:
    """Open every scaler's client with the operator's settings (its startup); a tool or a test
    without settings gets the ones the environment says."""
    given = settings if settings is not None else load_settings()
    shared.FLIGHTS.close()
    for scaler in REGISTRY.values():
        await scaler.open(given)


async def close_all() -> None:
    """Close every scaler's client (the operator's cleanup); safe to call twice."""
    shared.FLIGHTS.close()
    for scaler in REGISTRY.values():
        await scaler.close()


@contextlib.asynccontextmanager
async def opened() -> AsyncIterator[None]:
    """Every scaler's client open for the duration (tools and tests)."""
    try:
        await open_all()
        yield
    finally:
        await close_all()
