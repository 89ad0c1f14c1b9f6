"""Metric sources of the ScaledApp autoscaler, one module per ``type`` (like KEDA's ``pkg/scalers``).

The only entry point the autoscaler needs::

    from kopfscale.scaledapp.sources import read_metric, MetricReading, SourceContext

    reading = await read_metric(metric_spec, ctx)   # never raises
    if reading.error is None:
        use(reading.value)

Each source module keeps its parsing pure (response → number, no I/O) and its I/O wrapper thin.
See docs/metric-sources.md for the fields, semantics and errors of each source.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from typing import Any

import aiohttp

from kopfscale.scaledapp.sources import cron, http_json, prometheus, resource
from kopfscale.scaledapp.sources.base import (
    DEFAULT_TIMEOUT,
    MetricReading,
    Source,
    SourceContext,
    SourceError,
    timeout_of,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "SOURCES",
    "MetricReading",
    "Source",
    "SourceContext",
    "SourceError",
    "read_metric",
]

logger = logging.getLogger(__name__)

SOURCES: dict[str, Source] = {
    "prometheus": prometheus.SOURCE,
    "http": http_json.SOURCE,
    "cron": cron.SOURCE,
    "resource": resource.SOURCE,
}


async def read_metric(metric_spec: Mapping[str, Any], ctx: SourceContext) -> MetricReading:
    """Read one metric of a ScaledApp spec. Never raises: failures come back as ``.error``.

    The source's ``timeout`` field (seconds, default 3) bounds the whole read.
    """
    name = ""
    label = "metric"
    timeout = DEFAULT_TIMEOUT
    try:
        if not isinstance(metric_spec, Mapping):
            raise SourceError(f"metric spec must be a mapping, got {type(metric_spec).__name__}")
        raw_name = metric_spec.get("name")
        name = raw_name if isinstance(raw_name, str) else ""
        kind = metric_spec.get("type")
        if not isinstance(kind, str) or kind not in SOURCES:
            known = ", ".join(sorted(SOURCES))
            raise SourceError(f"unknown metric type {kind!r}, expected one of: {known}")
        source = SOURCES[kind]
        label = kind
        config = metric_spec.get(kind)
        if not isinstance(config, Mapping):
            raise SourceError(f"the {kind!r} section is missing or is not a mapping")
        label = source.describe(config)
        timeout = timeout_of(config)
        async with asyncio.timeout(timeout):
            value = await source.read(metric_spec, config, ctx)
        if not isinstance(value, float | int) or not math.isfinite(value):
            raise SourceError(f"read a non-finite value {value!r}")
        return MetricReading(name=name, value=float(value))
    except SourceError as e:
        return MetricReading(name=name, error=f"{label}: {e}")
    except TimeoutError:
        return MetricReading(name=name, error=f"{label}: timed out after {timeout:g}s")
    except aiohttp.ClientError as e:
        return MetricReading(name=name, error=f"{label}: request failed: {_client_error(e)}")
    except Exception as e:
        logger.exception("Unexpected failure reading metric %r (%s)", name, label)
        return MetricReading(name=name, error=f"{label}: unexpected {type(e).__name__}: {e}")


def _client_error(e: aiohttp.ClientError) -> str:
    text = str(e) or type(e).__name__
    return " ".join(text.split())
