"""Scenarios 2 and 4: settled objects. Steady state (nothing changes: what does the operator still
do?) and footprint (RSS and CPU with 0, 1000, 2000 and 5000 objects, half Greeters, half ScaledApps).

Measured in windows of fixed length; each window is one sample of: the process's API requests
(reads, writes, writes to Deployments/Services), the resourceVersion changes of the children
(every watch event of a Deployment or Service in the namespace, whoever caused it), CPU seconds
and RSS.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import Recorder, Stat, condition, core_path, custom_path
from bench.harness import Bench, Subject, wait_quiet, wait_until

NAMESPACE = "steady"
KEY = "steady"
POLLING_INTERVAL = 15  # the default: these ScaledApps are not the reaction benchmark's


class Watched:
    """Ready Greeters, existing ScaledApp Deployments and child change events in the namespace."""

    def __init__(self, bench: Bench) -> None:
        self.ready: set[str] = set()
        self.sa_deployments: set[str] = set()
        self.child_events = 0
        self.recorders = [
            Recorder(bench.api, custom_path("greeters", NAMESPACE), self.on_greeter),
            Recorder(bench.api, core_path("deployments", NAMESPACE), self.on_child),
            Recorder(bench.api, core_path("services", NAMESPACE), self.on_child),
        ]

    async def start(self) -> None:
        for r in self.recorders:
            await r.start()

    async def stop(self) -> None:
        for r in self.recorders:
            await r.stop()

    def on_greeter(self, kind: str, obj: dict[str, Any], _: float) -> None:
        name = obj["metadata"]["name"]
        if kind != "DELETED" and condition(obj, "Ready") == "True":
            self.ready.add(name)
        else:
            self.ready.discard(name)

    def on_child(self, kind: str, obj: dict[str, Any], _: float) -> None:
        if kind != "LISTED":
            self.child_events += 1
        name = obj["metadata"]["name"]
        if name.startswith("sa-") and obj.get("kind", "Deployment") == "Deployment":
            (self.sa_deployments.discard if kind == "DELETED" else self.sa_deployments.add)(name)


async def grow(bench: Bench, watched: Watched, each: int, quiet: float) -> dict[str, float]:
    """Make the namespace hold ``each`` Greeters and ``each`` ScaledApps, settled."""
    started = time.monotonic()
    await bench.api.ensure_namespace(NAMESPACE)
    await bench.set_metric(KEY, 10)
    greeters = [bench.greeter(f"g-{i:05d}") for i in range(each)]
    apps = [bench.scaledapp(f"sa-{i:05d}", KEY, POLLING_INTERVAL) for i in range(each)]
    await asyncio.gather(
        bench.create_many("greeters", NAMESPACE, greeters), bench.create_many("scaledapps", NAMESPACE, apps)
    )
    created = time.monotonic() - started
    complete = await wait_until(
        lambda: len(watched.ready) >= each and len(watched.sa_deployments) >= each,
        within=min(180 + 0.3 * each, 300),
        interval=0.5,
    )
    if not complete:
        print(
            f"  ! not settled: {len(watched.ready)} Greeters Ready, "
            f"{len(watched.sa_deployments)} ScaledApp Deployments"
        )
    ready = time.monotonic() - started
    await wait_quiet(bench, quiet, within=max(60.0, 2 * POLLING_INTERVAL))
    return {
        "create_seconds": created,
        "ready_seconds": ready,
        "settled_seconds": time.monotonic() - started,
        "settled": complete,
        "greeters_ready": len(watched.ready),
        "scaledapp_deployments": len(watched.sa_deployments),
    }


async def windows(
    bench: Bench, subject: Subject, watched: Watched, count: int, seconds: float
) -> dict[str, Any]:
    samples = []
    for _ in range(count):
        counts0, cpu0, events0 = await bench.counts(), subject.cpu(), watched.child_events
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        counts = (await bench.counts()) - counts0
        samples.append(
            {
                "seconds": elapsed,
                "requests": counts.total,
                "reads": counts.reads,
                "writes": counts.writes,
                "child_writes": counts.child_writes,
                "child_rv_changes": watched.child_events - events0,
                "cpu_seconds": subject.cpu() - cpu0,
                "cpu_percent": (subject.cpu() - cpu0) / elapsed * 100,
                "rss_mib": subject.rss(),
                "by_key": counts.summary()["by_key"],
            }
        )
    keys = (
        "requests",
        "reads",
        "writes",
        "child_writes",
        "child_rv_changes",
        "cpu_seconds",
        "cpu_percent",
        "rss_mib",
    )
    out: dict[str, Any] = {k: Stat.of([s[k] for s in samples]).to_json() for k in keys}
    out["totals"] = {k: sum(s[k] for s in samples) for k in keys[:6]}
    out["seconds"] = sum(s["seconds"] for s in samples)
    out["window_seconds"] = seconds
    out["peak_rss_mib"] = subject.peak()
    out["samples"] = samples
    return out
