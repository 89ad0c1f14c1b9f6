"""Scenarios on settled objects (namespace ``steady``, half Greeters, half ScaledApps with
pollingInterval 15 s): footprint beside its floor and a memory census, steady state, a soak, loop
lateness at 2000 ScaledApps, and objects that are not ours.

Measured in windows of fixed length; each window is one sample of: the process's API requests
(reads, writes, writes to Deployments/Services, bytes it received), the resourceVersion changes of
the children (every watch event of a Deployment or Service in the namespace, whoever caused it),
CPU seconds and RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import time
from typing import Any

from bench import census, figures
from bench.common import Recorder, Recorders, Stat, condition, core_path, custom_path
from bench.harness import Bench, Subject, wait_quiet, wait_until
from bench.scenarios.reaction import LATENESS_METRIC, lateness_figures

NAMESPACE = "steady"
KEY = "steady"
POLLING_INTERVAL = 15  # the default: these ScaledApps are not the reaction benchmark's
OTHERS = "others"  # the namespace of objects that are not kopfscale's


class Watched(Recorders):
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


async def grow(
    bench: Bench, watched: Watched, greeters: int, quiet: float, scaledapps: int | None = None
) -> dict[str, Any]:
    """Make the namespace hold ``greeters`` Greeters and ``scaledapps`` (default: as many)
    ScaledApps, settled."""
    apps_n = greeters if scaledapps is None else scaledapps
    started = time.monotonic()
    await bench.api.ensure_namespace(NAMESPACE)
    await bench.set_metric(KEY, 10)
    greeter_bodies = [bench.greeter(f"g-{i:05d}") for i in range(greeters)]
    apps = [bench.scaledapp(f"sa-{i:05d}", KEY, POLLING_INTERVAL) for i in range(apps_n)]
    await asyncio.gather(
        bench.create_many("greeters", NAMESPACE, greeter_bodies),
        bench.create_many("scaledapps", NAMESPACE, apps),
    )
    created = time.monotonic() - started
    complete = await wait_until(
        lambda: len(watched.ready) >= greeters and len(watched.sa_deployments) >= apps_n,
        within=min(180 + 0.3 * (greeters + apps_n), 600),
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
    bench: Bench, subject: Subject, watched: Watched | None, count: int, seconds: float
) -> dict[str, Any]:
    samples = []
    for _ in range(count):
        counts0, cpu0 = await bench.counts(), subject.cpu()
        events0 = watched.child_events if watched else 0
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        counts = (await bench.counts()) - counts0
        cpu = subject.cpu() - cpu0
        samples.append(
            {
                "seconds": elapsed,
                "requests": counts.total,
                "reads": counts.reads,
                "writes": counts.writes,
                "child_writes": counts.child_writes,
                "child_rv_changes": (watched.child_events if watched else 0) - events0,
                "cpu_seconds": cpu,
                "cpu_percent": cpu / elapsed * 100,
                "rss_mib": subject.rss(),
                "bytes_in": counts.bytes_out,
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
        "bytes_in",
    )
    out: dict[str, Any] = {k: Stat.of([s[k] for s in samples]).to_json() for k in keys}
    out["totals"] = {k: sum(s[k] for s in samples) for k in (*keys[:6], "bytes_in")}
    out["seconds"] = sum(s["seconds"] for s in samples)
    out["window_seconds"] = seconds
    out["peak_rss_mib"] = subject.peak()
    out["samples"] = samples
    return out


# --- footprint: kopfscale, its floor and a census on the same objects --------------------------------
async def swap(bench: Bench, stop: Subject, start: Subject, quiet: float) -> float:
    """Stop one process, start the other on the same objects and wait until it has settled (no
    writes for ``quiet`` seconds, its lists done); returns the seconds that took."""
    await stop.stop()
    t0 = time.monotonic()
    await start.start(within=300)
    await wait_quiet(bench, quiet, within=300)
    await asyncio.sleep(quiet)  # its lists are done and every event dispatched
    return time.monotonic() - t0


async def footprint_level(
    bench: Bench,
    kopfscale: Subject,
    floor: Subject,
    census_subject: Subject | None,
    watched: Watched | None,
    count: int,
    seconds: float,
    quiet: float,
    kopfscale_windows: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """At the objects there are now: kopfscale as it lived through them (its windows, or
    ``kopfscale_windows`` already measured), the floor started on them, and kopfscale started
    fresh on them under the census wrapper (windows, then the census). kopfscale runs again after."""
    out: dict[str, Any] = {
        "kopfscale": kopfscale_windows or await windows(bench, kopfscale, watched, count, seconds)
    }
    out["floor_settle_seconds"] = await swap(bench, kopfscale, floor, quiet)
    out["floor"] = await windows(bench, floor, watched, count, seconds)
    if census_subject is not None:
        out["fresh_settle_seconds"] = await swap(bench, floor, census_subject, quiet)
        out["fresh"] = await windows(bench, census_subject, watched, count, seconds)
        out["census"] = await take_census(census_subject)
        await census_subject.stop()
    else:
        await floor.stop()
    await kopfscale.start(within=300)
    await wait_quiet(bench, quiet, within=300)
    return out


async def take_census(subject: Subject, within: float = 600.0) -> dict[str, Any]:
    """bench/census.py in the wrapper's process (it answers SIGUSR1); the type table trimmed."""
    path = census.out_path(subject.pid, subject.env.get("KOPFSCALE_CENSUS_DIR"))
    before = path.stat().st_mtime if path.exists() else 0.0
    os.kill(subject.pid, signal.SIGUSR1)
    ok = await wait_until(
        lambda: path.exists() and path.stat().st_mtime > before, within=within, interval=0.2
    )
    if not ok:
        raise TimeoutError(f"no census from {subject.name} within {within:.0f} s")
    data: dict[str, Any] = json.loads(path.read_text())
    print("  census: " + census.table(data, rows=8).replace("\n", "\n    "))
    by_type_all = data.pop("by_type_all", {})
    data["by_type_all"] = dict(sorted(by_type_all.items(), key=lambda kv: -kv[1][1])[:400])
    return data


def census_per_object(levels: dict[str, dict[str, Any]], rows: int = 25) -> dict[str, Any]:
    """Per-object growth between the lowest and the highest level that have a census."""
    have = sorted((int(n), lvl["census"]) for n, lvl in levels.items() if lvl.get("census"))
    if len(have) < 2 or have[-1][0] == have[0][0]:
        return {}
    (n0, c0), (n1, c1) = have[0], have[-1]
    objects = n1 - n0
    table = census.per_object(c0, c1, objects)[:rows]
    return {
        "from": n0,
        "to": n1,
        "object_bytes_per_object": (c1["object_bytes"] - c0["object_bytes"]) / objects,
        "rss_kib_per_object": (c1["rss_mib"] - c0["rss_mib"]) * 1024 / objects,
        "rows": [{"type": t, "count": c, "bytes": b} for t, c, b in table],
    }


# --- soak: does RSS stop growing after settling? ---------------------------------------------------
async def soak(
    bench: Bench, subject: Subject, seconds: float, every: float, tail_span: float
) -> dict[str, Any]:
    """RSS (and CPU, requests) every ``every`` s for ``seconds``; the least-squares slope of RSS over
    the last ``tail_span`` seconds and over the whole soak, in MiB per minute."""
    samples: list[dict[str, float]] = []
    t0, cpu0, counts0 = time.monotonic(), subject.cpu(), await bench.counts()
    next_print = t0 + 60
    while time.monotonic() - t0 < seconds:
        now = time.monotonic()
        counts = (await bench.counts()) - counts0
        samples.append(
            {
                "t": now - t0,
                "rss_mib": subject.rss(),
                "cpu_seconds": subject.cpu() - cpu0,
                "requests": counts.total,
                "writes": counts.writes,
            }
        )
        if now >= next_print:
            print(f"  soak {now - t0:.0f} s: RSS {samples[-1]['rss_mib']:.1f} MiB")
            next_print += 60
        await asyncio.sleep(every)
    points = [(s["t"] / 60, s["rss_mib"]) for s in samples]
    last = figures.tail(points, tail_span / 60)
    tail_slope = figures.slope(last)
    growth = tail_slope * tail_span / 60 if not math.isnan(tail_slope) else math.nan
    rss_end = samples[-1]["rss_mib"] if samples else math.nan
    allowed = max(2.0, 0.01 * rss_end)
    return {
        "seconds": seconds,
        "every": every,
        "tail_seconds": tail_span,
        "rss_start_mib": samples[0]["rss_mib"] if samples else math.nan,
        "rss_end_mib": rss_end,
        "rss_max_mib": max((s["rss_mib"] for s in samples), default=math.nan),
        "slope_all_mib_per_min": figures.slope(points),
        "slope_tail_mib_per_min": tail_slope,
        "tail_growth_mib": growth,
        "allowed_growth_mib": allowed,
        "stops_growing": bool(not math.isnan(growth) and growth <= allowed),
        "peak_rss_mib": subject.peak(),
        "cpu_percent": (samples[-1]["cpu_seconds"] / max(samples[-1]["t"], 1e-6) * 100)
        if samples
        else math.nan,
        "samples": samples,
    }


# --- loop lateness at 2000 ScaledApps ------------------------------------------------------------------
async def lateness(bench: Bench, subject: Subject, count: int, seconds: float) -> dict[str, Any]:
    """kopfscale's loop-lateness histogram over ``count`` windows of ``seconds`` (from /metrics)."""
    per_window = []
    text0 = first = await subject.metrics_text()
    cpu0, t0 = subject.cpu(), time.monotonic()
    for _ in range(count):
        await asyncio.sleep(seconds)
        text1 = await subject.metrics_text()
        delta = figures.bucket_delta(
            figures.histogram(text1, LATENESS_METRIC), figures.histogram(text0, LATENESS_METRIC)
        )
        per_window.append(lateness_figures(delta))
        text0 = text1
    total = figures.bucket_delta(
        figures.histogram(text0, LATENESS_METRIC), figures.histogram(first, LATENESS_METRIC)
    )
    elapsed = time.monotonic() - t0
    out = lateness_figures(total)
    out.update(
        {
            "exported": bool(figures.histogram(text0, LATENESS_METRIC)),
            "windows": per_window,
            "p99_by_window": Stat.of([w["p99_s"] for w in per_window]).to_json(),
            "seconds": elapsed,
            "cpu_percent": (subject.cpu() - cpu0) / elapsed * 100,
            "rss_mib": subject.rss(),
        }
    )
    return out


# --- only what is ours: unrelated Deployments and Services elsewhere ------------------------------------
class Churn:
    """Scales ``n`` unrelated Deployments 0 -> 1 -> 0 and annotates their Services, over and over,
    until stopped; counts the watch events that caused (driver side)."""

    def __init__(self, bench: Bench, n: int) -> None:
        self.bench, self.n = bench, n
        self.events = 0
        self.cycles = 0
        self.recorders = [
            Recorder(bench.api, core_path("deployments", OTHERS), self.on_event),
            Recorder(bench.api, core_path("services", OTHERS), self.on_event),
            Recorder(bench.api, f"/api/v1/namespaces/{OTHERS}/pods", self.on_event),
        ]
        self.task: asyncio.Task[None] | None = None

    def on_event(self, kind: str, obj: dict[str, Any], _: float) -> None:
        if kind != "LISTED":
            self.events += 1

    async def create(self) -> float:
        t0 = time.monotonic()
        await self.bench.api.ensure_namespace(OTHERS)
        for r in self.recorders:
            await r.start()
        names = [f"other-{i:05d}" for i in range(self.n)]
        deploy = core_path("deployments", OTHERS)
        svc = core_path("services", OTHERS)
        await asyncio.gather(
            self.bench.create_many(
                "", OTHERS, [self.bench.plain_deployment(x, 0) for x in names], path=deploy
            ),
            self.bench.create_many("", OTHERS, [self.bench.plain_service(x) for x in names], path=svc),
        )
        return time.monotonic() - t0

    async def _loop(self) -> None:
        api = self.bench.api
        while True:
            for replicas in (1, 0):
                patches = [
                    api.merge_patch(
                        f"{core_path('deployments', OTHERS)}/other-{i:05d}", {"spec": {"replicas": replicas}}
                    )
                    for i in range(self.n)
                ] + [
                    api.merge_patch(
                        f"{core_path('services', OTHERS)}/other-{i:05d}",
                        {"metadata": {"annotations": {"bench/tick": str(self.cycles)}}},
                    )
                    for i in range(self.n)
                ]
                await asyncio.gather(*patches, return_exceptions=True)
                await asyncio.sleep(2.0)
            self.cycles += 1

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for r in self.recorders:
            await r.stop()


async def unrelated(
    bench: Bench, subject: Subject, watched: Watched | None, n: int, count: int, seconds: float
) -> dict[str, Any]:
    """kopfscale's windows before, then while ``n`` unrelated Deployments + Services are created and
    scaled up and down in another namespace; the namespace is deleted afterwards."""
    before = await windows(bench, subject, watched, count, seconds)
    churn = Churn(bench, n)
    created_in = await churn.create()
    print(f"  {n} unrelated Deployments + Services created in {created_in:.0f} s; scaling them up and down")
    churn.start()
    during = await windows(bench, subject, watched, count, seconds)
    await churn.stop()
    out = {
        "objects": n,
        "create_seconds": created_in,
        "cycles": churn.cycles,
        "events": churn.events,
        "before": before,
        "during": during,
    }
    paths = (core_path("deployments", OTHERS), core_path("services", OTHERS))
    if not await bench.api.delete_namespace(OTHERS, wait=300, paths=paths):
        print("  ! namespace others: objects still there after 300 s")
    return out


async def cleanup(bench: Bench) -> None:
    """Delete the namespace (ScaledApps may carry kopf's finalizer: kopfscale must be running)."""
    left = (
        custom_path("scaledapps", NAMESPACE),
        custom_path("greeters", NAMESPACE),
        core_path("deployments", NAMESPACE),
    )
    if not await bench.api.delete_namespace(NAMESPACE, wait=600, paths=left):
        print("  ! namespace steady: objects still there after 600 s")


def rss_ratio(level: dict[str, Any], who: str = "kopfscale") -> float:
    """kopfscale's (or the fresh one's) median RSS over the floor's at one footprint level."""
    mine, floor = level.get(who), level.get("floor")
    if not mine or not floor:
        return math.nan
    return figures.ratio(float(mine["rss_mib"]["median"]), float(floor["rss_mib"]["median"]))
