"""Scenario 3: a metric steps up, then down; how long until each ScaledApp's Deployment has the new
replica count, against its ``pollingInterval``, with 1, 100 and 1000 ScaledApps.

All ScaledApps of a level read one shared value from the metric server: 10 (1 replica with an
AverageValue target of 10), then 20 (2 replicas), then 10 again. The step's time is the moment
the metric server has the new value; the reaction is the first watch event of the Deployment
with the new ``spec.replicas``, seen by the driver.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import Recorder, Stat, core_path, percentile
from bench.harness import Bench, Subject, wait_until

NAMESPACE = "react"
KEY = "react"
LOW, HIGH = 10.0, 20.0  # metric values: 1 and 2 replicas


class Replicas:
    """spec.replicas of every Deployment in the namespace, and when it first reached a value."""

    def __init__(self, bench: Bench) -> None:
        self.current: dict[str, int] = {}
        self.reached: dict[str, float] = {}
        self.want: int | None = None
        self.since = 0.0
        self.recorder = Recorder(bench.api, core_path("deployments", NAMESPACE), self.on_event)

    def on_event(self, kind: str, obj: dict[str, Any], t: float) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.current.pop(name, None)
            return
        replicas = int((obj.get("spec") or {}).get("replicas") or 0)
        self.current[name] = replicas
        if self.want is not None and replicas == self.want and t >= self.since:
            self.reached.setdefault(name, t)

    def expect(self, replicas: int) -> None:
        self.want, self.since, self.reached = replicas, time.monotonic(), {}

    def all_at(self, replicas: int, n: int) -> bool:
        return len(self.current) >= n and all(v == replicas for v in self.current.values())


async def grow(bench: Bench, state: Replicas, n: int, polling_interval: int) -> float:
    """Make the namespace hold ``n`` ScaledApps, all settled at 1 replica; returns the seconds taken."""
    started = time.monotonic()
    await bench.api.ensure_namespace(NAMESPACE)
    await bench.set_metric(KEY, LOW)
    names = [f"sa-{i:05d}" for i in range(n)]
    await bench.create_many(
        "scaledapps", NAMESPACE, [bench.scaledapp(x, KEY, polling_interval) for x in names]
    )
    await wait_until(lambda: state.all_at(1, n), within=120 + 0.2 * n, interval=0.2)
    await asyncio.sleep(polling_interval)  # every loop has run at least once more
    return time.monotonic() - started


async def step(
    bench: Bench, state: Replicas, n: int, value: float, replicas: int, limit: float
) -> dict[str, Any]:
    await wait_until(lambda: state.all_at(3 - replicas, n), within=limit)
    state.expect(replicas)
    await bench.set_metric(KEY, value)
    t0 = time.monotonic()
    state.since = t0
    complete = await wait_until(lambda: len(state.reached) >= n, within=limit, interval=0.05)
    values = [t - t0 for t in state.reached.values()]
    return {
        "to": replicas,
        "complete": complete,
        "reacted": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else float("nan"),
    }


async def measure(
    bench: Bench, subject: Subject, state: Replicas, n: int, runs: int, polling_interval: int
) -> dict[str, Any]:
    """``runs`` step pairs (up, then down) with ``subject`` in charge; both steps are samples."""
    timeout = 4 * polling_interval + 60 + 0.05 * n
    counts0, cpu0, t0 = await bench.counts(), subject.cpu(), time.monotonic()
    steps = []
    for i in range(runs):
        for value, replicas in ((HIGH, 2), (LOW, 1)):
            s = await step(bench, state, n, value, replicas, timeout)
            steps.append(s)
            print(
                f"  reaction {subject.name} N={n} run {i + 1}/{runs} -> {replicas}: "
                f"p50 {s['p50']:.2f} s, p95 {s['p95']:.2f} s, max {s['max']:.2f} s"
                + ("" if s["complete"] else f"  [INCOMPLETE {s['reacted']}/{n}]")
            )
    elapsed = time.monotonic() - t0
    counts = (await bench.counts()) - counts0
    bound = polling_interval + 1.0
    return {
        "n": n,
        "steps": steps,
        "polling_interval": polling_interval,
        "complete": all(s["complete"] for s in steps),
        "p50_s": Stat.of([s["p50"] for s in steps]).to_json(),
        "p95_s": Stat.of([s["p95"] for s in steps]).to_json(),
        "max_s": Stat.of([s["max"] for s in steps]).to_json(),
        "within_bound": all(s["complete"] and s["max"] <= bound for s in steps),
        "requests_per_min": counts.total * 60 / elapsed,
        "writes_per_min": counts.writes * 60 / elapsed,
        "cpu_percent": (subject.cpu() - cpu0) / elapsed * 100,
        "seconds": elapsed,
        "requests": counts.summary(),
    }
