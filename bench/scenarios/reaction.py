"""Scenario 3: a metric steps up, then down; how long until each workload's Deployment has the new
replica count, with 1, 100 and 1000 autoscaled workloads, and who else could have done it.

One set of Deployments (the ScaledApps' own, ``sa-*`` in namespace ``react``) and one metric
(all read one shared value from bench/metric_server.py): 10 (1 replica at an AverageValue target of
10), then 20 (2 replicas), then 10 again. Who scales them, one at a time, same polling everywhere:

* ``kopfscale``: the ScaledApps (pollingInterval P);
* ``poll``: bench/rawclient.py's reference loop: per Deployment every P seconds, GET the metric,
  PATCH ``/scale`` when it changed (what a polling autoscaler costs with no framework);
* ``direct``: the step applied straight away by a raw client, PATCH ``/scale`` of every Deployment
  at the moment of the step (what the control plane itself allows: no polling at all);
* ``baseline``: the naive loop (bench/baseline.py);
* ``keda``: KEDA ScaledObjects (``metrics-api`` trigger on the same URL, pollingInterval P) and the
  HPAs they create, synced by kube-controller-manager every 5 s (the local control plane's
  ``--horizontal-pod-autoscaler-sync-period``; P is 5 s in the full run so all are equal).

Each step waits a random 0..P seconds first (the same sequence for every subject), so that no one
is measured in phase with its own rounds. Per subject: first a steady window (metric constant):
API requests and writes per minute, CPU and RSS of every process involved (the subject's, KEDA's
two, kube-controller-manager's — whose difference with and without the HPAs is the HPA's share —
the apiserver's and etcd's); then step pairs: reaction p50/p95/max over the workloads, writes per
workload reaction by verb and resource, and, for kopfscale, ScaledApps whose ``status.replicas``
still disagrees with their Deployment once all have the new count, and for how long. kopfscale's
loop lateness histogram is read too.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
import time
from collections.abc import Callable
from typing import Any

from bench import figures
from bench.common import Recorder, Recorders, Stat, core_path, custom_path, percentile
from bench.harness import KEDA_PROCESSES, Bench, Counts, Subject, wait_until

NAMESPACE = "react"
KEY = "react"
LOW, HIGH = 10.0, 20.0  # metric values: 1 and 2 replicas
CONTROL_PLANE = ("kube-apiserver", "etcd", "kube-controller-manager")
#: The operator's loop-lateness histogram (``/metrics``); adjust when the scheduler renames it.
LATENESS_METRIC = "kopfscale_autoscaler_loop_lateness_seconds"
KEDA_API = "/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects"
HPA_API = "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"


class Replicas(Recorders):
    """spec.replicas of every Deployment in the namespace, when it first reached a value, and the
    ScaledApps as last seen (their ``status.replicas``)."""

    def __init__(self, bench: Bench) -> None:
        self.current: dict[str, int] = {}
        self.reached: dict[str, float] = {}
        self.want: int | None = None
        self.since = 0.0
        self.deployments: dict[str, dict[str, Any]] = {}
        self.apps: dict[str, dict[str, Any]] = {}
        self.status_changes: collections.Counter[str] = collections.Counter()  # what ScaledApp writes changed
        self.samples: list[dict[str, Any]] = []  # the first few of those changes, before and after
        self.recorders = [
            Recorder(bench.api, core_path("deployments", NAMESPACE), self.on_event),
            Recorder(bench.api, custom_path("scaledapps", NAMESPACE), self.on_app),
        ]

    def on_event(self, kind: str, obj: dict[str, Any], t: float) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.current.pop(name, None)
            self.deployments.pop(name, None)
            return
        replicas = int((obj.get("spec") or {}).get("replicas") or 0)
        self.current[name] = replicas
        self.deployments[name] = obj
        if self.want is not None and replicas == self.want and t >= self.since:
            self.reached.setdefault(name, t)

    def on_app(self, kind: str, obj: dict[str, Any], _: float) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.apps.pop(name, None)
            return
        before = (self.apps.get(name) or {}).get("status")
        if before is not None:
            changed = status_changes(before, obj.get("status") or {})
            self.status_changes.update(changed)
            if changed and len(self.samples) < 3:
                after = obj.get("status") or {}
                self.samples.append({k: [before.get(k), after.get(k)] for k in changed if "/" not in k})
        self.apps[name] = obj

    def expect(self, replicas: int) -> None:
        self.want, self.since, self.reached = replicas, time.monotonic(), {}

    def all_at(self, replicas: int, n: int) -> bool:
        return len(self.current) >= n and all(v == replicas for v in self.current.values())

    def reported(self, n: int) -> bool:
        """Every one of the ``n`` ScaledApps has a status for its current generation."""
        return len(self.apps) >= n and all(
            (app.get("status") or {}).get("observedGeneration") == app["metadata"].get("generation")
            for app in self.apps.values()
        )

    def pods_settled(self) -> bool:
        """Every Deployment has the Pods its count asks for (the ScaledApps' next rounds see them)."""
        return all(
            (d.get("status") or {}).get("replicas") == (d.get("spec") or {}).get("replicas")
            and (d.get("status") or {}).get("updatedReplicas") == (d.get("spec") or {}).get("replicas")
            for d in self.deployments.values()
        )

    def stale(self) -> int:
        return sum(
            1
            for name, app in self.apps.items()
            if figures.scaledapp_staleness(app, self.deployments.get(name)) is not None
        )


def status_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The top-level status fields that differ (conditions by type, their time aside)."""
    changed = [
        k for k in sorted(set(before) | set(after)) if k != "conditions" and before.get(k) != after.get(k)
    ]

    def conditions(status: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
        return {
            c.get("type"): (c.get("status"), c.get("reason"), c.get("message"))
            for c in status.get("conditions") or []
        }

    old, new = conditions(before), conditions(after)
    changed += [f"conditions/{t}" for t in sorted(set(old) | set(new), key=str) if old.get(t) != new.get(t)]
    return changed


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


# --- who else scales the same Deployments ------------------------------------------------------------
async def keda_on(bench: Bench, n: int, polling_interval: int, within: float) -> float:
    """ScaledObjects for the ``n`` Deployments; returns once KEDA has made all their HPAs and the
    HPAs have synced once (they report a current metric)."""
    started = time.monotonic()
    path = KEDA_API.format(ns=NAMESPACE)
    bodies = [bench.scaled_object(f"sa-{i:05d}", KEY, polling_interval) for i in range(n)]
    await bench.create_many("", NAMESPACE, bodies, path=path)

    async def synced() -> int:
        items, _ = await bench.api.list(HPA_API.format(ns=NAMESPACE))
        return sum(1 for h in items if (h.get("status") or {}).get("currentMetrics"))

    deadline = started + within
    while time.monotonic() < deadline:
        if await synced() >= n:
            break
        await asyncio.sleep(2.0)
    return time.monotonic() - started


async def keda_off(bench: Bench, within: float) -> None:
    """Delete the ScaledObjects and wait until their HPAs are gone (kopfscale yields to an HPA)."""
    path = KEDA_API.format(ns=NAMESPACE)
    items, _ = await bench.api.list(path)
    await asyncio.gather(
        *(bench.api.request("DELETE", f"{path}/{o['metadata']['name']}") for o in items),
        return_exceptions=True,
    )
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        hpas, _ = await bench.api.list(HPA_API.format(ns=NAMESPACE))
        objs, _ = await bench.api.list(path)
        if not hpas and not objs:
            return
        await asyncio.sleep(1.0)
    print("  ! KEDA's HPAs still there after the ScaledObjects were deleted")


# --- what every process involved spends -------------------------------------------------------------
Probe = Callable[[], tuple[float, float]]  # () -> (CPU seconds so far, RSS MiB now)


def probes(bench: Bench, who: str, process: Subject | None) -> dict[str, Probe]:
    """The subject's own processes, then the control plane's (kube-controller-manager hosts the HPA)."""

    def component(name: str) -> Probe:
        return lambda: (bench.component_cpu(name), bench.component_rss(name))

    out: dict[str, Probe] = {}
    if who == "keda":
        for name in KEDA_PROCESSES:
            out[name] = component(name)
    elif process is not None:
        p = process
        out[who] = lambda: (p.cpu(), p.rss())
    for name in CONTROL_PLANE:
        out[name] = component(name)
    return out


async def requests_of(bench: Bench, who: str) -> Counts:
    """The subject's proxy counters (KEDA's: both of its processes' proxies, added up; nothing when
    KEDA could not be routed through them)."""
    if who != "keda":
        return await bench.counts()
    total = Counts()
    for counts in (await bench.peer_counts()).values():
        total = total + counts
    return total


async def steady_window(
    bench: Bench, who: str, process: Subject | None, seconds: float, state: Replicas
) -> dict[str, Any]:
    """Metric constant for ``seconds``: requests and writes per minute, CPU and RSS per process,
    kube-controller-manager's own requests per minute by method, and what the ScaledApp status
    changes seen meanwhile changed (per field, per minute)."""
    procs = probes(bench, who, process)
    before = {name: probe() for name, probe in procs.items()}
    counts0, kcm0 = await requests_of(bench, who), await bench.kcm_requests()
    peers0 = await bench.peer_counts() if who == "keda" else {}
    state.status_changes.clear()
    state.samples.clear()
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    counts, kcm1 = (await requests_of(bench, who)) - counts0, await bench.kcm_requests()
    per_min = 60 / elapsed
    out: dict[str, Any] = {
        "status_changes_per_min": {k: v * per_min for k, v in state.status_changes.most_common()},
        "status_change_samples": list(state.samples),
        "seconds": elapsed,
        "requests_per_min": counts.total * per_min,
        "writes_per_min": counts.writes * per_min,
        "by_key_per_min": {k: v * per_min for k, v in sorted(counts.by_key.items()) if v},
        "processes": {},
        "kcm_requests_per_min": {m: (kcm1.get(m, 0) - kcm0.get(m, 0)) * per_min for m in kcm1},
    }
    if who == "keda":
        peers1 = await bench.peer_counts()
        out["peer_requests_per_min"] = {
            name: (peers1[name] - peers0[name]).total * per_min for name in peers1 if name in peers0
        }
    for name, probe in procs.items():
        cpu, rss = probe()
        out["processes"][name] = {
            "cpu_seconds": cpu - before[name][0],
            "cpu_percent": (cpu - before[name][0]) / elapsed * 100,
            "rss_mib": rss,
        }
    return out


async def step(
    bench: Bench,
    state: Replicas,
    n: int,
    value: float,
    replicas: int,
    limit: float,
    on_step: Callable[[int], None] | None,
    stale_limit: float | None,
    delay: float,
) -> dict[str, Any]:
    await wait_until(lambda: state.all_at(3 - replicas, n), within=limit)
    await asyncio.sleep(delay)  # a phase unrelated to the last round (the same for every subject)
    state.expect(replicas)
    await bench.set_metric(KEY, value)
    t0 = time.monotonic()
    state.since = t0
    if on_step is not None:
        on_step(replicas)
    complete = await wait_until(lambda: len(state.reached) >= n, within=limit, interval=0.05)
    values = [t - t0 for t in state.reached.values()]
    out: dict[str, Any] = {
        "to": replicas,
        "complete": complete,
        "reacted": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else math.nan,
    }
    if stale_limit is not None:  # kopfscale: status.replicas catches up with the Deployments
        t1, at_clear = time.monotonic(), state.stale()
        zero = await wait_until(lambda: state.stale() == 0, within=stale_limit, interval=0.25)
        out["stale"] = {
            "at_clear": at_clear,
            "seconds_to_zero": time.monotonic() - t1 if zero else math.nan,
            "left": state.stale(),
        }
    return out


async def measure(
    bench: Bench,
    who: str,
    process: Subject | None,
    state: Replicas,
    n: int,
    runs: int,
    polling_interval: int,
    steady_seconds: float,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """A steady window, then ``runs`` step pairs (up, then down) with ``who`` in charge."""
    steady = await steady_window(bench, who, process, steady_seconds, state)
    timeout = 4 * polling_interval + 60 + 0.1 * n
    stale_limit = 2 * polling_interval + 10 if who == "kopfscale" else None
    text0 = await process.metrics_text() if process is not None else ""
    counts0, t0 = await requests_of(bench, who), time.monotonic()
    procs = probes(bench, who, process)
    cpu0 = {name: probe()[0] for name, probe in procs.items()}
    steps = []
    phases = random.Random(n)  # every subject steps at the same phases, none aligned with its rounds
    for i in range(runs):
        for value, replicas in ((HIGH, 2), (LOW, 1)):
            delay = phases.uniform(0, polling_interval)
            s = await step(bench, state, n, value, replicas, timeout, on_step, stale_limit, delay)
            steps.append(s)
            stale = s.get("stale")
            print(
                f"  reaction {who} N={n} run {i + 1}/{runs} -> {replicas}: "
                f"p50 {s['p50']:.2f} s, p95 {s['p95']:.2f} s, max {s['max']:.2f} s"
                + (f", stale {stale['at_clear']} -> 0 in {stale['seconds_to_zero']:.1f} s" if stale else "")
                + ("" if s["complete"] else f"  [INCOMPLETE {s['reacted']}/{n}]")
            )
    # What the last step caused but held (kopfscale holds events and status writes while /scale
    # writes go first, at most 5 s) counts too: one more round's time before counting.
    await asyncio.sleep(polling_interval + 5)
    elapsed = time.monotonic() - t0
    counts = (await requests_of(bench, who)) - counts0
    step_cpu = {name: (probe()[0] - cpu0[name]) / elapsed * 100 for name, probe in procs.items()}
    lateness: dict[str, Any] | None = None
    if process is not None and process.metrics_port:
        buckets = figures.bucket_delta(
            figures.histogram(await process.metrics_text(), LATENESS_METRIC),
            figures.histogram(text0, LATENESS_METRIC),
        )
        lateness = lateness_figures(buckets)
    bound = polling_interval + 1.0
    reactions = n * len(steps)
    out: dict[str, Any] = {
        "n": n,
        "who": who,
        "steps": steps,
        "polling_interval": polling_interval,
        "complete": all(s["complete"] for s in steps),
        "p50_s": Stat.of([s["p50"] for s in steps]).to_json(),
        "p95_s": Stat.of([s["p95"] for s in steps]).to_json(),
        "max_s": Stat.of([s["max"] for s in steps]).to_json(),
        "within_bound": all(s["complete"] and s["max"] <= bound for s in steps),
        "steady": steady,
        "requests_per_min": steady["requests_per_min"],
        "writes_per_min": steady["writes_per_min"],
        "cpu_percent": sum(
            p["cpu_percent"] for k, p in steady["processes"].items() if k not in CONTROL_PLANE
        ),
        "step_seconds": elapsed,
        "step_cpu_percent": step_cpu,  # of one core, per process, over the steps (the steady window aside)
        "requests": counts.summary(),
        "writes_per_reaction": figures.writes_per_object(counts.by_key, reactions),
        "lateness": lateness,
    }
    stales = [s["stale"] for s in steps if s.get("stale")]
    if stales:
        out["stale_at_clear"] = Stat.of([s["at_clear"] for s in stales]).to_json()
        out["stale_seconds_to_zero"] = Stat.of([s["seconds_to_zero"] for s in stales]).to_json()
        out["stale_left"] = Stat.of([s["left"] for s in stales]).to_json()
    return out


def lateness_figures(buckets: figures.Buckets) -> dict[str, Any]:
    """p50/p99 (interpolated within buckets, as Prometheus would) and the exact share <= 1 s."""
    return {
        "metric": LATENESS_METRIC,
        "rounds": figures.histogram_count(buckets),
        "p50_s": figures.histogram_quantile(0.5, buckets),
        "p99_s": figures.histogram_quantile(0.99, buckets),
        "within_1s": figures.fraction_within(buckets, 1.0),
        "buckets": buckets,
    }


async def run_level(
    bench: Bench,
    kopfscale: Subject,
    baseline: Subject | None,
    state: Replicas,
    n: int,
    runs: int,
    polling_interval: int,
    steady_seconds: float,
    whos: list[str],
    concurrency: int,
) -> dict[str, Any]:
    """Every subject in ``whos`` on the same ``n`` Deployments; kopfscale runs again at the end."""
    results: dict[str, Any] = {}
    for who in whos:
        if who == "kopfscale":
            if not kopfscale.running:
                await kopfscale.start(within=300)
            await wait_until(lambda: state.all_at(1, n), within=60 + 0.1 * n)
            # Steady means after the first rounds: every Pod made, every status written, and the
            # follow-ups of rounds that ran before their workload's Pods existed.
            await wait_until(
                lambda: state.pods_settled() and state.reported(n) and state.stale() == 0,
                within=60 + 0.1 * n,
            )
            await asyncio.sleep(2 * polling_interval)
            results[who] = await measure(
                bench, who, kopfscale, state, n, runs, polling_interval, steady_seconds
            )
            continue
        await kopfscale.stop()
        if who == "baseline" and baseline is not None:
            await baseline.start(within=300)
            results[who] = await measure(
                bench, who, baseline, state, n, runs, polling_interval, steady_seconds
            )
            await baseline.stop()
        elif who == "poll":
            tool = bench.tool(
                "poll",
                [
                    "poll",
                    "--namespace",
                    NAMESPACE,
                    "--metric-url",
                    bench.metric_url(KEY),
                    "--interval",
                    str(polling_interval),
                    "--concurrency",
                    str(concurrency),
                ],
            )
            await tool.start(within=120)
            results[who] = await measure(bench, who, tool, state, n, runs, polling_interval, steady_seconds)
            await tool.stop()
        elif who == "direct":
            tool = bench.tool(
                "direct", ["scale", "--namespace", NAMESPACE, "--concurrency", str(concurrency)]
            )
            await tool.start(within=120)
            results[who] = await measure(
                bench,
                who,
                tool,
                state,
                n,
                runs,
                polling_interval,
                steady_seconds,
                on_step=lambda r, t=tool: t.send(str(r)),
            )
            await tool.stop()
        elif who == "keda" and bench.peers:
            took = await keda_on(bench, n, polling_interval, within=120 + 0.3 * n)
            print(f"  KEDA: {n} ScaledObjects, their HPAs synced after {took:.0f} s")
            try:
                results[who] = await measure(
                    bench, who, None, state, n, runs, polling_interval, steady_seconds
                )
                results[who]["setup_seconds"] = took
            finally:
                await keda_off(bench, within=120 + 0.1 * n)
    if not kopfscale.running:
        await kopfscale.start(within=300)
    return results
