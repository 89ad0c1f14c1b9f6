"""Scenario 1: N Greeters created at once. Per object: create -> Deployment exists, create -> Service
exists, create -> ``Ready=True`` (the greeting Pods run on kwok's simulated node), seen by the
driver's own watches; and the throughput of the whole burst."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from bench.common import Recorder, Stat, condition, core_path, custom_path, percentile
from bench.harness import Bench, Subject, wait_until


async def one_run(bench: Bench, subject: Subject, n: int, run: int) -> dict[str, Any]:
    ns = f"burst-{subject.name}-{n}-{run}"
    await bench.api.ensure_namespace(ns)
    deployment: dict[str, float] = {}
    service: dict[str, float] = {}
    ready: dict[str, float] = {}

    def first(seen: dict[str, float]) -> Any:
        def on_event(kind: str, obj: dict[str, Any], t: float) -> None:
            if kind != "DELETED":
                seen.setdefault(obj["metadata"]["name"], t)

        return on_event

    def on_greeter(kind: str, obj: dict[str, Any], t: float) -> None:
        if condition(obj, "Ready") == "True":
            ready.setdefault(obj["metadata"]["name"], t)

    recorders = [
        Recorder(bench.api, core_path("deployments", ns), first(deployment)),
        Recorder(bench.api, core_path("services", ns), first(service)),
        Recorder(bench.api, custom_path("greeters", ns), on_greeter),
    ]
    for r in recorders:
        await r.start()
    counts0, cpu0 = await bench.counts(), subject.cpu()
    started = time.monotonic()
    names = [f"g-{i:05d}" for i in range(n)]
    created = await bench.create_many("greeters", ns, [bench.greeter(name) for name in names])
    created_in = time.monotonic() - started
    complete = await wait_until(lambda: len(ready) >= n, within=min(90 + 0.25 * n, 240), interval=0.05)
    cpu, counts = subject.cpu() - cpu0, (await bench.counts()) - counts0
    for r in recorders:
        await r.stop()

    def latencies(seen: dict[str, float]) -> list[float]:
        return [max(0.0, seen[k] - created[k]) * 1000 for k in names if k in seen]

    def throughput(*seen: dict[str, float]) -> float:
        if any(len(s) < n for s in seen):
            return math.nan
        last = max(max(s.values()) for s in seen)
        return n / max(last - started, 1e-6)

    result: dict[str, Any] = {"n": n, "run": run, "complete": complete, "create_seconds": created_in}
    for label, seen in (("deployment", deployment), ("service", service), ("ready", ready)):
        values = latencies(seen)
        result[label] = {
            "seen": len(values),
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "p99": percentile(values, 99),
        }
    result["throughput_children"] = throughput(deployment, service)
    result["throughput_ready"] = throughput(ready)
    result["cpu_seconds"] = cpu
    result["requests"] = counts.summary()
    children = (custom_path("greeters", ns), core_path("deployments", ns), core_path("services", ns))
    if not await bench.api.delete_namespace(ns, wait=240, paths=children):
        print(f"  ! namespace {ns}: objects still there after 240 s")
    await asyncio.sleep(2)  # the operator's handlers of the deletions finish
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(runs), "complete": all(r["complete"] for r in runs)}
    for label in ("deployment", "service", "ready"):
        for q in ("p50", "p95", "p99"):
            out[f"{label}_{q}_ms"] = Stat.of([r[label][q] for r in runs]).to_json()
    for key in ("throughput_children", "throughput_ready", "cpu_seconds"):
        out[key] = Stat.of([r[key] for r in runs]).to_json()
    for key in ("total", "reads", "writes", "child_writes"):
        out[f"requests_{key}"] = Stat.of([r["requests"][key] for r in runs]).to_json()
    return out


async def run(bench: Bench, subject: Subject, sizes: dict[int, int]) -> dict[str, Any]:
    """``sizes``: N -> runs. Returns per N the summary and the raw runs."""
    results: dict[str, Any] = {}
    for n, runs in sizes.items():
        raw = []
        for i in range(runs):
            r = await one_run(bench, subject, n, i)
            print(
                f"  burst {subject.name} N={n} run {i + 1}/{runs}: "
                f"Deployment p50 {r['deployment']['p50']:.0f} ms p99 {r['deployment']['p99']:.0f} ms, "
                f"Ready p50 {r['ready']['p50']:.0f} ms, {r['throughput_children']:.1f}/s, "
                f"{r['requests']['total']} requests ({r['requests']['writes']} writes), "
                f"cpu {r['cpu_seconds']:.1f} s" + ("" if r["complete"] else "  [INCOMPLETE]")
            )
            raw.append(r)
        results[str(n)] = {"summary": summarize(raw), "raw": raw}
    return results
