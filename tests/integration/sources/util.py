"""Run read_metric() once, the way the ScaledApp handlers will (own event loop, shared session)."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import aiohttp

from kopfscale.scaledapp.sources import MetricReading, SourceContext, read_metric


def read_once(spec: Any, *, namespace: str = "default", pod_selector: str | None = None) -> MetricReading:
    async def main() -> MetricReading:
        async with aiohttp.ClientSession() as http:
            ctx = SourceContext(
                namespace=namespace,
                pod_selector=pod_selector,
                now=lambda: datetime.datetime.now(datetime.UTC),
                http=http,
            )
            return await read_metric(spec, ctx)

    return asyncio.run(main())
