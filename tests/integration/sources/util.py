"""Run read_metric() once, the way the operator does (own event loop, the sources' clients opened)."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

from kopfscale.scaledapp.sources import MetricReading, SourceContext, opened, read_metric


def read_once(spec: Any, *, namespace: str = "default", pod_selector: str | None = None) -> MetricReading:
    return read_timed(spec, namespace=namespace, pod_selector=pod_selector)[0]


def read_timed(
    spec: Any, *, namespace: str = "default", pod_selector: str | None = None
) -> tuple[MetricReading, float]:
    """The reading and how long read_metric() took (not counting the event loop's teardown)."""

    async def main() -> tuple[MetricReading, float]:
        async with opened():
            ctx = SourceContext(
                namespace=namespace,
                pod_selector=pod_selector,
                now=lambda: datetime.datetime.now(datetime.UTC),
            )
            started = time.monotonic()
            reading = await read_metric(spec, ctx)
            return reading, time.monotonic() - started

    return asyncio.run(main())
