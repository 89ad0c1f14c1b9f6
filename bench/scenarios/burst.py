"""Scenario 1: N Greeters created at once, beside the floors measured in the same run.

Who runs a burst (one at a time, each alone on the control plane, interleaved run by run so that
the machine's drift hits them alike):

* ``raw``: bench/rawclient.py creates the same N Deployments + Services itself, ``concurrency``
  at a time (kopfscale's worker count): the physical floor of the control plane;
* ``minimal``: bench/floor.py in ``minimal`` mode, a kopf operator whose one handler creates the
  Greeter's Deployment + Service: the CPU-per-Greeter floor of a kopf operator;
* ``kopfscale``; and ``baseline`` (the naive loop) where configured.

Per object, seen by the driver's own watches: create -> Deployment, -> Service, -> Deployment
ready (``readyReplicas`` 1: the Pod runs on kwok), -> Greeter ``Ready=True`` (for those that write
status). Per run: Greeters/s (N / time from the first create to the last child, and to the last
ready Deployment), CPU seconds of the process (from the first create until it has written nothing
for 3 s; the baseline, never quiet, until its burst is done), writes per Greeter by verb and
resource (the proxy), and *status staleness*: once every Deployment is ready (the backlog has
cleared), how many Greeters' status still disagrees with their Deployment, and how long until
none does.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from bench import figures
from bench.common import Recorder, Recorders, Stat, condition, core_path, custom_path, percentile
from bench.harness import Bench, Subject, wait_quiet, wait_until

WRITES_STATUS = ("kopfscale", "baseline")  # subjects that keep Greeter status


class Seen(Recorders):
    """What the driver's watches saw in one burst namespace."""

    def __init__(self, bench: Bench, ns: str) -> None:
        self.deployment: dict[str, float] = {}
        self.service: dict[str, float] = {}
        self.deployment_ready: dict[str, float] = {}
        self.greeter_ready: dict[str, float] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.greeters: dict[str, dict[str, Any]] = {}
        self.recorders = [
            Recorder(bench.api, core_path("deployments", ns), self.on_deployment),
            Recorder(bench.api, core_path("services", ns), self.on_service),
            Recorder(bench.api, custom_path("greeters", ns), self.on_greeter),
        ]

    def on_deployment(self, kind: str, obj: dict[str, Any], t: float) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.deployments.pop(name, None)
            return
        self.deployment.setdefault(name, t)
        self.deployments[name] = obj
        if int((obj.get("status") or {}).get("readyReplicas") or 0) >= 1:
            self.deployment_ready.setdefault(name, t)

    def on_service(self, kind: str, obj: dict[str, Any], t: float) -> None:
        if kind != "DELETED":
            self.service.setdefault(obj["metadata"]["name"], t)

    def on_greeter(self, kind: str, obj: dict[str, Any], t: float) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.greeters.pop(name, None)
            return
        self.greeters[name] = obj
        if condition(obj, "Ready") == "True":
            self.greeter_ready.setdefault(name, t)

    def stale(self) -> int:
        """Greeters whose status disagrees with their Deployment now."""
        return sum(
            1
            for name, greeter in self.greeters.items()
            if figures.greeter_staleness(greeter, self.deployments.get(name)) is not None
        )


async def staleness(seen: Seen, limit: float) -> dict[str, Any]:
    """From now (every Deployment ready): stale Greeters now, and seconds until none (NaN if not
    within ``limit``)."""
    t0 = time.monotonic()
    at_clear = seen.stale()
    worst = at_clear
    while True:
        stale = seen.stale()
        worst = max(worst, stale)
        if stale == 0:
            return {"at_clear": at_clear, "worst": worst, "seconds_to_zero": time.monotonic() - t0, "left": 0}
        if time.monotonic() - t0 > limit:
            return {"at_clear": at_clear, "worst": worst, "seconds_to_zero": math.nan, "left": stale}
        await asyncio.sleep(0.5)


async def one_run(
    bench: Bench, who: str, subject: Subject | None, n: int, run: int, concurrency: int, stale_limit: float
) -> dict[str, Any]:
    """One burst of ``n`` by ``who`` (``subject`` running already; None for the raw client)."""
    ns = f"burst-{who}-{n}-{run}"
    await bench.api.ensure_namespace(ns)
    seen = Seen(bench, ns)
    await seen.start()
    names = [f"g-{i:05d}" for i in range(n)]
    if subject is None:  # the raw client: prepared first, so its start-up is not timed
        subject = bench.tool(
            f"raw-{n}", ["burst", "--namespace", ns, "--n", str(n), "--concurrency", str(concurrency)]
        )
        await subject.start(within=120)
        offset = subject.log_size()
        counts0, cpu0 = await bench.counts(), subject.cpu()
        started = time.monotonic()
        subject.send("go")
        await subject.wait_log("rawclient: done", offset, within=120 + 0.5 * n)
        created = dict.fromkeys(names, started)
        raw: Subject | None = subject
    else:
        counts0, cpu0 = await bench.counts(), subject.cpu()
        started = time.monotonic()
        created = await bench.create_many("greeters", ns, [bench.greeter(name) for name in names])
        raw = None
    created_in = time.monotonic() - started
    limit = min(90 + 0.3 * n, 400)
    complete = await wait_until(lambda: len(seen.deployment_ready) >= n, within=limit, interval=0.05)
    stale: dict[str, Any] | None = None
    if who in WRITES_STATUS:
        stale = await staleness(seen, stale_limit)
    if who != "baseline":  # the naive loop is never quiet: its window ends with the burst
        await wait_quiet(bench, 3.0, within=60)
    cpu, counts = subject.cpu() - cpu0, (await bench.counts()) - counts0
    if raw is not None:
        await raw.stop()
    await seen.stop()

    def latencies(at: dict[str, float]) -> list[float]:
        return [max(0.0, at[k] - created[k]) * 1000 for k in names if k in at]

    def throughput(*at: dict[str, float]) -> float:
        if any(len(s) < n for s in at):
            return math.nan
        last = max(max(s.values()) for s in at)
        return n / max(last - started, 1e-6)

    result: dict[str, Any] = {
        "who": who,
        "n": n,
        "run": run,
        "complete": complete,
        "create_seconds": created_in,
    }
    for label, at in (
        ("deployment", seen.deployment),
        ("service", seen.service),
        ("deployment_ready", seen.deployment_ready),
        ("ready", seen.greeter_ready),
    ):
        values = latencies(at)
        result[label] = {
            "seen": len(values),
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "p99": percentile(values, 99),
        }
    result["throughput_children"] = throughput(seen.deployment, seen.service)
    result["throughput_deployment_ready"] = throughput(seen.deployment_ready)
    result["throughput_ready"] = throughput(seen.greeter_ready) if who in WRITES_STATUS else math.nan
    result["cpu_seconds"] = cpu
    result["cpu_ms_per_greeter"] = cpu / n * 1000
    result["requests"] = counts.summary()
    result["writes_per_greeter"] = figures.writes_per_object(counts.by_key, n)
    result["stale"] = stale
    children = (custom_path("greeters", ns), core_path("deployments", ns), core_path("services", ns))
    if not await bench.api.delete_namespace(ns, wait=300, paths=children):
        print(f"  ! namespace {ns}: objects still there after 300 s")
    await asyncio.sleep(2)  # the operator's handlers of the deletions finish
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"runs": len(runs), "complete": all(r["complete"] for r in runs)}
    for label in ("deployment", "service", "deployment_ready", "ready"):
        for q in ("p50", "p95", "p99"):
            out[f"{label}_{q}_ms"] = Stat.of([r[label][q] for r in runs]).to_json()
    for key in (
        "throughput_children",
        "throughput_deployment_ready",
        "throughput_ready",
        "cpu_seconds",
        "cpu_ms_per_greeter",
    ):
        out[key] = Stat.of([r[key] for r in runs]).to_json()
    for key in ("total", "reads", "writes", "child_writes"):
        out[f"requests_{key}"] = Stat.of([r["requests"][key] for r in runs]).to_json()
    keys = {k for r in runs for k in r["writes_per_greeter"]}
    out["writes_per_greeter"] = {
        k: Stat.of([r["writes_per_greeter"].get(k, 0.0) for r in runs]).to_json()
        for k in sorted(keys, key=lambda k: -max(r["writes_per_greeter"].get(k, 0.0) for r in runs))
    }
    stales = [r["stale"] for r in runs if r.get("stale")]
    if stales:
        out["stale_at_clear"] = Stat.of([s["at_clear"] for s in stales]).to_json()
        out["stale_seconds_to_zero"] = Stat.of([s["seconds_to_zero"] for s in stales]).to_json()
        out["stale_left"] = Stat.of([s["left"] for s in stales]).to_json()
    return out


def log_line(r: dict[str, Any], runs: int) -> str:
    stale = r.get("stale")
    stale_text = (
        f", stale {stale['at_clear']} at clear -> 0 in {stale['seconds_to_zero']:.1f} s"
        if stale and stale["left"] == 0
        else (f", stale {stale['left']} left" if stale else "")
    )
    return (
        f"  burst {r['who']} N={r['n']} run {r['run'] + 1}/{runs}: "
        f"{r['throughput_children']:.1f}/s children, {r['throughput_deployment_ready']:.1f}/s ready, "
        f"Deployment p50 {r['deployment']['p50']:.0f} ms, cpu {r['cpu_seconds']:.1f} s "
        f"({r['cpu_ms_per_greeter']:.1f} ms/Greeter), "
        f"{r['writes_per_greeter'].get('total', math.nan):.2f} writes/Greeter{stale_text}"
        + ("" if r["complete"] else "  [INCOMPLETE]")
    )


async def run(
    bench: Bench,
    subjects: dict[str, Subject | None],
    sizes: dict[int, int],
    who_at: dict[int, list[str]],
    concurrency: int,
    stale_limit: float,
) -> dict[str, Any]:
    """``sizes``: N -> runs; ``who_at``: N -> who bursts at that N (in this order, each run).
    ``subjects`` maps who to its process (None: the raw client). Only one process runs at a time;
    kopfscale is running again at the end. Returns who -> N -> summary and raw runs."""
    results: dict[str, Any] = {}
    for n, runs in sizes.items():
        raw_runs: dict[str, list[dict[str, Any]]] = {}
        for i in range(runs):
            for who in who_at[n]:
                subject = subjects[who]
                for other_who, other in subjects.items():
                    if other is not None and other_who != who and other.running:
                        await other.stop()
                if subject is not None and not subject.running:
                    await subject.start(within=300)
                r = await one_run(bench, who, subject, n, i, concurrency, stale_limit)
                print(log_line(r, runs))
                raw_runs.setdefault(who, []).append(r)
        for who, rs in raw_runs.items():
            results.setdefault(who, {})[str(n)] = {"summary": summarize(rs), "raw": rs}
    for who, other in subjects.items():
        if other is not None and who != "kopfscale" and other.running:
            await other.stop()
    kopfscale = subjects.get("kopfscale")
    if kopfscale is not None and not kopfscale.running:
        await kopfscale.start(within=300)
    return results
