"""Render results.json as the Markdown report (results.md) and the plot (results.png).

Every figure is printed beside its floor or peer from the same run, with the ratio; the last section
is the table of targets, each with what it is held against."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench import figures
from bench.common import Stat

MB_PER_MIB = 1.048576
MIB = 2**20
BURST_WHO = ("raw", "minimal", "kopfscale", "baseline")
REACTION_WHO = ("kopfscale", "poll", "direct", "baseline", "keda")
WHO_TEXT = {
    "raw": "raw client (floor)",
    "minimal": "minimal kopf (floor)",
    "kopfscale": "**kopfscale**",
    "baseline": "naive baseline",
    "poll": "reference loop (floor)",
    "direct": "direct writes (floor)",
    "keda": "KEDA+HPA (peer)",
}


def st(d: dict[str, Any] | None) -> Stat:
    if not d:
        return Stat(math.nan, math.nan, math.nan, 0)
    return Stat(float(d["median"]), float(d["min"]), float(d["max"]), int(d["runs"]))


def num(x: float | None, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def fmt_ratio(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2f}"


def short(s: Stat, digits: int = 0, scale: float = 1.0) -> str:
    """median, and (min-max) only when the runs differ: for the targets table."""
    if math.isnan(s.median):
        return "n/a"
    text = f"{s.median * scale:.{digits}f}"
    if s.runs > 1 and s.low != s.high:
        text += f" ({s.low * scale:.{digits}f}-{s.high * scale:.{digits}f})"
    return text


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**reached**" if ok else "**missed**")


def _sizes(section: dict[str, Any]) -> list[str]:
    return sorted(section, key=int)


class Targets:
    """Rows of the closing table: target, kopfscale, what it is held against, ratio, verdict."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, target: str, measured: str, against: str, ratio: str, ok: bool | None) -> None:
        self.rows.append((target, measured, against, ratio, verdict(ok)))

    def dropped(self, target: str, why: str) -> None:
        self.rows.append((f"~~{target}~~", "", why, "", "dropped"))

    def lines(self) -> list[str]:
        out = ["| target | kopfscale | floor / peer (same run) | ratio | |", "|---|---|---|---|---|"]
        return out + [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in self.rows]


def markdown(r: dict[str, Any]) -> str:
    cfg, env = r["config"], r["environment"]
    loads = ", ".join(f"{k} {v:.1f}" for k, v in (env.get("loadavg_by_scenario") or {}).items())
    lines = [
        "# kopfscale benchmarks",
        "",
        f"{env['date']}, commit `{env['commit']}`"
        f"{' (with uncommitted changes)' if env.get('dirty') else ''}, "
        f"{env['cpus']} CPUs ({env['cpu_model']}), {env['memory_gib']} GiB, Python {env['python']}, "
        f"kopf {env['kopf']}. {'**Quick run (small N, smoke only)**' if cfg['quick'] else 'Full run'}; "
        f"took {r.get('seconds', 0) / 60:.0f} min; scenarios {', '.join(cfg['scenarios'])}. "
        f"Reproduce: `make bench` (`BENCH_ARGS=--quick` for a smoke run).",
        "",
        f"1-minute load average at the start {env.get('loadavg_at_start', math.nan):.1f}; after each "
        f"scenario: {loads or 'n/a'} (the machine is shared: timings and CPU shares move with it; request "
        "and write counts and RSS do not).",
        "",
        *(f"**Note:** {note}" for note in r.get("notes", [])),
        *([f"**The run failed:** `{r['failed'].strip().splitlines()[-1]}`", ""] if r.get("failed") else []),
        "",
        "Every figure: **median (min-max)** over the runs or windows said in its row; `(1 run)` where "
        "time allowed only one. Latencies are seen by the benchmark driver's own watches on the "
        "apiserver; API requests are counted by a reverse proxy that only the process under test goes "
        "through (KEDA's two processes through proxies of their own); CPU and RSS are each process's "
        "own (/proc). Every process runs alone on the same control plane, one after the other, on the "
        "same objects.",
        "",
    ]
    floor = r.get("floor")
    if floor:
        diffs = floor.get("differences") or []
        lines += [
            f"**The floor** (bench/floor.py, read from kopfscale's kopf registry at run time): kopf alone, "
            f"{floor['description']}. Its kopf settings are "
            + (
                "identical to kopfscale's `configure`."
                if not diffs
                else f"NOT kopfscale's: {'; '.join(diffs)}."
            ),
            "",
        ]
    targets = Targets()
    lines += footprint_section(r, targets)
    lines += soak_section(r, targets)
    lines += burst_section(r, targets)
    lines += reaction_section(r, targets)
    lines += steady_section(r, targets)
    lines += lateness_section(r, targets)
    lines += unrelated_section(r, targets)
    lines += ["## Targets", "", *targets.lines(), "", "![results](results.png)", ""]
    return "\n".join(lines)


# --- footprint, census, soak --------------------------------------------------------------------------
def footprint_section(r: dict[str, Any], targets: Targets) -> list[str]:
    fp = r.get("footprint") or {}
    if not fp:
        return []
    lines = [
        "## 1. Footprint beside the floor",
        "",
        "At N objects (half Greeters, half ScaledApps with pollingInterval 15 s), settled: **kopfscale** "
        "as it lived through creating them; the **floor** started on the same objects; **kopfscale "
        "fresh**: kopfscale started anew on the same settled objects (under the census wrapper, before "
        "its census). RSS is the median over the windows (MB = 10^6 bytes); ratio = kopfscale / floor.",
        "",
        "| objects | windows | kopfscale RSS (MB) | peak | floor RSS (MB) | **kopfscale / floor** "
        "| fresh RSS (MB) | fresh / floor | kopfscale CPU % | floor CPU % | kopfscale requests/window |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in _sizes(fp):
        lvl = fp[n]
        k, f, fresh = lvl.get("kopfscale"), lvl.get("floor"), lvl.get("fresh")
        if not k:
            continue
        ratio = _rss_ratio(k, f)
        fresh_ratio = _rss_ratio(fresh, f)
        lines.append(
            f"| {n} | {len(k['samples'])} x {k['window_seconds']:.0f} s "
            f"| {st(k['rss_mib']).fmt(0, MB_PER_MIB)} "
            f"| {k['peak_rss_mib'] * MB_PER_MIB:.0f} | {st(f['rss_mib']).fmt(0, MB_PER_MIB) if f else '-'} "
            f"| **{fmt_ratio(ratio)}** | {st(fresh['rss_mib']).fmt(0, MB_PER_MIB) if fresh else '-'} "
            f"| {fmt_ratio(fresh_ratio)} | {st(k['cpu_percent']).fmt(1)} "
            f"| {st(f['cpu_percent']).fmt(1) if f else '-'} | {st(k['requests']).fmt(0)} |"
        )
        if int(n) > 0 and f:
            targets.add(
                f"RSS <= 1.25 x the floor at {n} objects",
                f"{st(k['rss_mib']).median * MB_PER_MIB:.0f} MB (fresh: "
                f"{st(fresh['rss_mib']).median * MB_PER_MIB if fresh else math.nan:.0f} MB)",
                f"floor {st(f['rss_mib']).median * MB_PER_MIB:.0f} MB",
                f"{fmt_ratio(ratio)} (fresh {fmt_ratio(fresh_ratio)})",
                None if math.isnan(ratio) else ratio <= 1.25,
            )
    lines.append("")
    lines += census_section(r)
    return lines


def _rss_ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float:
    if not a or not b:
        return math.nan
    return figures.ratio(st(a["rss_mib"]).median, st(b["rss_mib"]).median)


def census_section(r: dict[str, Any]) -> list[str]:
    fp = r.get("footprint") or {}
    levels = [(n, fp[n]["census"]) for n in _sizes(fp) if fp[n].get("census")]
    if not levels:
        return []
    lines = [
        "### Memory census (kopfscale fresh, at each level)",
        "",
        "bench/census.py inside the operator's process: live Python objects by `sys.getsizeof` (GC-tracked "
        "and the atoms they hold), pymalloc's arenas, glibc's heap (`mallinfo2`), and the RSS after "
        "`malloc_trim(0)`. Run it yourself: `python -m bench.census serve -- run -A --standalone`, then "
        "`python -m bench.census take --pid PID`.",
        "",
        "| objects | RSS (MiB) | live objects | their MiB | pymalloc arenas MiB (free inside) "
        "| glibc heap MiB (free) | RSS after malloc_trim | asyncio tasks | threads |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, c in levels:
        p, g = c.get("pymalloc") or {}, c.get("glibc") or {}
        free_py = (p.get("free_blocks", 0) + p.get("unused_pools", 0)) / MIB
        lines.append(
            f"| {n} | {c['rss_mib']:.0f} | {c['objects']} | {c['object_bytes'] / MIB:.0f} "
            f"| {p.get('arena_total_bytes', 0) / MIB:.0f} ({free_py:.0f}) "
            f"| {g.get('arena', 0) / MIB:.0f} ({g.get('fordblks', 0) / MIB:.0f}) "
            f"| {c.get('rss_after_trim_mib', math.nan):.0f} | {sum((c.get('tasks') or {}).values())} "
            f"| {c.get('threads', 0)} |"
        )
    top_n, top = levels[-1]
    lines += [
        "",
        f"At {top_n} objects, the largest types and roots (deep size; shared objects count in each root):",
        "",
    ]
    lines += ["| type | count | MiB |", "|---|---|---|"]
    lines += [f"| `{t}` | {c} | {b / MIB:.1f} |" for t, c, b in top["by_type"][:15]]
    lines += ["", "| root | objects | MiB |", "|---|---|---|"]
    lines += [f"| `{x['root']}` | {x['objects']} | {x['bytes'] / MIB:.1f} |" for x in top["roots"][:12]]
    tasks = top.get("tasks") or {}
    if tasks:
        lines += ["", "asyncio tasks: " + ", ".join(f"`{k}` {v}" for k, v in list(tasks.items())[:10])]
    per = r.get("census_per_object") or {}
    if per:
        lines += [
            "",
            f"Per object, from {per['from']} to {per['to']} objects: "
            f"{per['object_bytes_per_object'] / 1024:.1f} KiB of live Python objects and "
            f"{per['rss_kib_per_object']:.1f} KiB of RSS per object. By type:",
            "",
            "| type | objects per object | bytes per object |",
            "|---|---|---|",
        ]
        lines += [f"| `{x['type']}` | {x['count']:.2f} | {x['bytes']:.0f} |" for x in per["rows"][:15]]
    lines.append("")
    return lines


def soak_section(r: dict[str, Any], targets: Targets) -> list[str]:
    s = r.get("soak")
    if not s:
        return []
    lines = [
        f"### Soak: {s['seconds'] / 60:.0f} minutes at {s.get('objects', '?')} objects (kopfscale)",
        "",
        f"RSS every {s['every']:.0f} s once settled: {s['rss_start_mib'] * MB_PER_MIB:.0f} MB at the start, "
        f"{s['rss_end_mib'] * MB_PER_MIB:.0f} MB at the end, {s['rss_max_mib'] * MB_PER_MIB:.0f} MB at most "
        f"(peak {s['peak_rss_mib'] * MB_PER_MIB:.0f}); least-squares slope "
        f"{num(s['slope_all_mib_per_min'], 2)} MiB/min over the whole soak, "
        f"{num(s['slope_tail_mib_per_min'], 2)} MiB/min over the last {s['tail_seconds'] / 60:g} min "
        f"({num(s['tail_growth_mib'], 1)} MiB over that span; 'stops growing' allows "
        f"{s['allowed_growth_mib']:.1f} MiB: max(2 MiB, 1 %)). CPU {num(s['cpu_percent'], 1)} % of a core.",
        "",
    ]
    targets.add(
        "RSS stops growing after settling (soak)",
        f"{num(s['slope_tail_mib_per_min'], 2)} MiB/min over the last {s['tail_seconds'] / 60:g} min",
        f"allowed {s['allowed_growth_mib']:.1f} MiB over it",
        "",
        bool(s["stops_growing"]),
    )
    return lines


# --- burst ----------------------------------------------------------------------------------------
def burst_section(r: dict[str, Any], targets: Targets) -> list[str]:
    b = r.get("burst")
    if not b:
        return []
    conc = r.get("burst_concurrency", "?")
    lines = [
        "## 2. Greeter create burst beside its floors",
        "",
        f"N Greeters created at once (the driver posts them 48 at a time). Floors in the same run, "
        f"interleaved run by run: the **raw client** creates the same N Deployments + Services itself, "
        f"{conc} at a time (kopfscale's worker count; bench/rawclient.py), the control plane's physical "
        "floor; the **minimal kopf** operator (bench/floor.py, minimal mode) creates them from one kopf "
        "handler per Greeter, the CPU floor of a kopf operator. Greeters/s: N / time from the first "
        "create to the last child (and to the last ready Deployment). CPU: the process's, from the first "
        "create until it has written nothing for 3 s. Ratios are per run (kopfscale's run i over the "
        "floor's run i, measured minutes apart), median (min-max).",
        "",
        "| N | who | runs | Greeters/s (children) | Greeters/s (Deployment ready) | Greeters/s (Ready) "
        "| create→Deployment p50 / p99 ms | CPU s | CPU ms / Greeter | writes / Greeter | requests |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sizes = sorted({n for who in b.values() for n in who}, key=int)
    for n in sizes:
        for who in BURST_WHO:
            x = b.get(who, {}).get(n)
            if not x:
                continue
            s = x["summary"]
            lines.append(
                f"| {n} | {WHO_TEXT[who]}{'' if s['complete'] else ' (incomplete)'} | {s['runs']} "
                f"| {st(s['throughput_children']).fmt(1)} | {st(s['throughput_deployment_ready']).fmt(1)} "
                f"| {st(s['throughput_ready']).fmt(1)} "
                f"| {st(s['deployment_p50_ms']).fmt(0)} / {st(s['deployment_p99_ms']).fmt(0)} "
                f"| {st(s['cpu_seconds']).fmt(1)} | {st(s['cpu_ms_per_greeter']).fmt(1)} "
                f"| {st(s['writes_per_greeter'].get('total')).fmt(2)} | {st(s['requests_total']).fmt(0)} |"
            )
    lines += [
        "",
        "| N | kopfscale / raw, Greeters/s | kopfscale / minimal kopf, CPU per Greeter |",
        "|---|---|---|",
    ]
    k = b.get("kopfscale", {})
    for n in sizes:
        if n not in k:
            continue
        tput = _pair_ratio(b, n, "kopfscale", "raw", "throughput_children")
        cpu = _pair_ratio(b, n, "kopfscale", "minimal", "cpu_ms_per_greeter")
        lines.append(f"| {n} | {tput.fmt(2)} | {cpu.fmt(2)} |")
        if int(n) > 1:  # the issue's targets are at N = 300 and 1000; a quick run shows its own N
            raw = b.get("raw", {}).get(n)
            targets.add(
                f"Greeters/s >= 0.9 x the raw client's (N={n})",
                f"{short(st(k[n]['summary']['throughput_children']), 1)}/s",
                f"raw {short(st(raw['summary']['throughput_children']), 1)}/s" if raw else "n/a",
                short(tput, 2),
                None if math.isnan(tput.median) else tput.median >= 0.9,
            )
            mini = b.get("minimal", {}).get(n)
            targets.add(
                f"CPU per Greeter <= 1.5 x the minimal kopf operator's (N={n})",
                f"{short(st(k[n]['summary']['cpu_ms_per_greeter']), 1)} ms",
                f"minimal {short(st(mini['summary']['cpu_ms_per_greeter']), 1)} ms" if mini else "n/a",
                short(cpu, 2),
                None if math.isnan(cpu.median) else cpu.median <= 1.5,
            )
    lines.append("")
    if k:
        biggest = _sizes(k)[-1]
        lines += writes_table(b, biggest, "Greeter")
        w = k[biggest]["summary"]["writes_per_greeter"].get("total")
        mini = b.get("minimal", {}).get(biggest)
        targets.add(
            f"writes per burst Greeter <= 4 (N={biggest})",
            short(st(w), 2),
            f"minimal kopf {short(st(mini['summary']['writes_per_greeter'].get('total')), 2)}"
            if mini
            else "n/a",
            "",
            None if math.isnan(st(w).median) else st(w).median <= 4,
        )
        lines += stale_lines(b, targets)
        if "1" in k:
            p50 = st(k["1"]["summary"]["deployment_p50_ms"])
            targets.add(
                "create→Deployment p50 <= 50 ms (one Greeter)",
                f"{short(p50, 0)} ms",
                "",
                "",
                p50.median <= 50,
            )
    raw = b.get("raw", {})
    if raw:
        biggest = _sizes(raw)[-1]
        best = st(raw[biggest]["summary"]["throughput_children"]).high
        targets.dropped(
            ">= 100 Greeters/s in a burst",
            f"physically out of reach here: the raw client, with no operator at all, created at most "
            f"{best:.1f} Greeters' children/s at N={biggest} on this control plane; the target is now "
            f"0.9 x that floor",
        )
    return lines


def _pair_ratio(b: dict[str, Any], n: str, a: str, floor: str, key: str) -> Stat:
    ra, rb = b.get(a, {}).get(n), b.get(floor, {}).get(n)
    if not ra or not rb:
        return Stat(math.nan, math.nan, math.nan, 0)
    values = figures.pairwise_ratios([x[key] for x in ra["raw"]], [x[key] for x in rb["raw"]])
    return Stat.of(values)


def writes_table(section: dict[str, Any], n: str, unit: str) -> list[str]:
    """Writes per object by verb and resource, one column per subject, at ``n``."""
    whos = [w for w in (*BURST_WHO, *REACTION_WHO) if w in section and n in section[w]]
    whos = list(dict.fromkeys(whos))
    keys: list[str] = []
    for w in whos:
        for key in section[w][n]["summary"]["writes_per_greeter"]:
            if key not in keys and key != "total":
                keys.append(key)
    lines = [
        f"Writes per {unit} at N={n}, by verb and resource (the proxy's counts / N; median over runs):",
        "",
        "| write | " + " | ".join(WHO_TEXT[w] for w in whos) + " |",
        "|---|" + "---|" * len(whos),
    ]
    for key in [*keys, "total"]:
        cells = [short(st(section[w][n]["summary"]["writes_per_greeter"].get(key)), 2) for w in whos]
        cells = ["0" if c == "n/a" else c for c in cells]  # a write a subject never made
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def stale_lines(b: dict[str, Any], targets: Targets) -> list[str]:
    lines = [
        "Status never stale: once every Deployment of the burst is ready (the backlog has cleared), Greeters "
        "whose `status` (readyReplicas, replicas, Ready) disagrees with their Deployment, and the seconds "
        "until none does:",
        "",
        "| N | who | stale when the backlog cleared | seconds until 0 | still stale at the limit |",
        "|---|---|---|---|---|",
    ]
    worst_left = 0.0
    found = False
    for who in ("kopfscale", "baseline"):
        for n in _sizes(b.get(who, {})):
            s = b[who][n]["summary"]
            if "stale_at_clear" not in s:
                continue
            found = True
            if who == "kopfscale":
                worst_left = max(worst_left, st(s["stale_left"]).high)
            lines.append(
                f"| {n} | {WHO_TEXT[who]} | {st(s['stale_at_clear']).fmt(0)} "
                f"| {st(s['stale_seconds_to_zero']).fmt(1)} "
                f"| {st(s['stale_left']).fmt(0)} |"
            )
    if not found:
        return []
    targets.add(
        "Greeter status never stale (burst: 0 left once the backlog clears)",
        f"{worst_left:.0f} left at worst",
        "",
        "",
        worst_left == 0,
    )
    return [*lines, ""]


# --- reaction -------------------------------------------------------------------------------------
def reaction_section(r: dict[str, Any], targets: Targets) -> list[str]:
    react = r.get("reaction")
    if not react:
        return []
    interval = r["config"]["polling_interval"]
    lines = [
        "## 3. Reaction: metric step → new `spec.replicas`, beside the floors and KEDA+HPA",
        "",
        f"The same Deployments (the ScaledApps' own), one shared metric stepping 10→20→10 (1→2→1 replicas), "
        f"polling {interval} s everywhere (ScaledApp pollingInterval, the reference loop's interval, KEDA's "
        "pollingInterval; the HPA controller syncs every 5 s on this control plane). Each step comes after a "
        "random 0..P s wait, the same sequence for every subject, so none is measured in phase with its own "
        "rounds. Per step: p50/p95/max "
        "over the workloads; median (min-max) over the steps. *Steady*: a window with the metric constant "
        "before the steps: requests and writes per minute of the subject (KEDA: operator + metrics "
        "server), CPU % of a core and RSS of each process involved. kube-controller-manager hosts the HPA "
        "controller (with its default 5 workers, `--concurrent-horizontal-pod-autoscaler-syncs`): its CPU "
        "and requests beside KEDA's minus beside kopfscale's are the HPA's share.",
        "",
        f"| N | who | steps | p50 (s) | p95 (s) | max (s) | within {interval + 1} s "
        "| requests/min | writes/min "
        "| CPU % (own) | RSS MB (own) | kcm CPU % | apiserver CPU % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in _sizes(react):
        for who in REACTION_WHO:
            x = react[n].get(who)
            if not x:
                continue
            procs = x["steady"]["processes"]
            own = {
                k: v
                for k, v in procs.items()
                if k not in ("kube-apiserver", "etcd", "kube-controller-manager")
            }
            rss = sum(v["rss_mib"] for v in own.values() if not math.isnan(v["rss_mib"]))
            lines.append(
                f"| {n} | {WHO_TEXT[who]}{'' if x['complete'] else ' (incomplete)'} | {len(x['steps'])} "
                f"| {st(x['p50_s']).fmt(2)} | {st(x['p95_s']).fmt(2)} | {st(x['max_s']).fmt(2)} "
                f"| {'yes' if x['within_bound'] else 'no'} | {x['requests_per_min']:.0f} "
                f"| {x['writes_per_min']:.0f} "
                f"| {x['cpu_percent']:.1f} | {rss * MB_PER_MIB:.0f} "
                f"| {procs.get('kube-controller-manager', {}).get('cpu_percent', math.nan):.1f} "
                f"| {procs.get('kube-apiserver', {}).get('cpu_percent', math.nan):.1f} |"
            )
    lines.append("")
    lines += keda_ratios(react)
    lines += reaction_writes(react, targets)
    k_sizes = [n for n in _sizes(react) if "kopfscale" in react[n]]
    if k_sizes:
        n = k_sizes[-1]
        k = react[n]["kopfscale"]
        poll = react[n].get("poll")
        direct = react[n].get("direct")
        against = "; ".join(
            f"{label} p95 {short(st(x['p95_s']), 2)} s"
            for label, x in (("reference loop", poll), ("direct writes", direct))
            if x
        )
        p95 = st(k["p95_s"]).median
        targets.add(
            f"metric step → replicas p95 <= pollingInterval + 1 s = {interval + 1} s (N={n})",
            f"p95 {short(st(k['p95_s']), 2)} s, max {short(st(k['max_s']), 2)} s",
            against or "n/a",
            f"{fmt_ratio(figures.ratio(p95, st(poll['p95_s']).median))} of the reference loop"
            if poll
            else "",
            None if math.isnan(p95) else p95 <= interval + 1,
        )
        keda = react[n].get("keda")
        if keda:
            targets.add(
                f"reaction p95 beside KEDA+HPA (N={n})",
                f"{short(st(k['p95_s']), 2)} s",
                f"KEDA+HPA {short(st(keda['p95_s']), 2)} s",
                fmt_ratio(figures.ratio(p95, st(keda["p95_s"]).median)),
                None,
            )
            k_rss = k["steady"]["processes"].get("kopfscale", {}).get("rss_mib", math.nan)
            e_rss = sum(
                v["rss_mib"] for name, v in keda["steady"]["processes"].items() if name.startswith("keda")
            )
            for what, a, b, unit in (
                ("CPU % of a core, steady", k["cpu_percent"], keda["cpu_percent"], "%"),
                ("RSS", k_rss * MB_PER_MIB, e_rss * MB_PER_MIB, " MB"),
                ("API requests/min, steady", k["requests_per_min"], keda["requests_per_min"], "/min"),
            ):
                targets.add(
                    f"{what} beside KEDA's operator + metrics server (N={n})",
                    f"{num(a, 1)}{unit}",
                    f"KEDA {num(b, 1)}{unit}",
                    fmt_ratio(figures.ratio(a, b)),
                    None,
                )
        stale = [react[m]["kopfscale"] for m in k_sizes if "stale_left" in react[m]["kopfscale"]]
        if stale:
            left = max(st(s["stale_left"]).high for s in stale)
            seconds = max(st(s["stale_seconds_to_zero"]).high for s in stale)
            lines += [
                "ScaledApp status after each step: at most "
                f"{max(st(s['stale_at_clear']).high for s in stale):.0f} "
                f"ScaledApps' `status.replicas` disagreed with their Deployment once all had the new count; "
                f"0 after {num(seconds, 1)} s at worst; {left:.0f} still stale at the limit.",
                "",
            ]
            targets.add(
                "ScaledApp status never stale (reaction: 0 left after each step)",
                f"{left:.0f} left at worst",
                "",
                "",
                left == 0,
            )
        lat = k.get("lateness")
        if lat and lat.get("rounds"):
            lines += [
                f"Loop lateness during the steps at N={n} (pollingInterval {interval} s, `{lat['metric']}`): "
                f"{lat['rounds']:.0f} rounds, p50 {num(lat['p50_s'], 3)} s, p99 {num(lat['p99_s'], 3)} s "
                f"(interpolated within buckets), {num(lat['within_1s'] * 100, 1)} % within 1 s.",
                "",
            ]
        cpu = k.get("step_cpu_percent")
        if cpu:
            shares = ", ".join(f"{name} {num(v, 0)} %" for name, v in cpu.items())
            lines += [f"CPU during the steps at N={n} (% of one core, each process): {shares}.", ""]
        changes = (k.get("steady") or {}).get("status_changes_per_min")
        if changes is not None:
            said = ", ".join(f"`{f}` {num(v, 1)}" for f, v in changes.items()) or "none"
            lines += [
                f"ScaledApp status fields changed per minute in the steady window at N={n}: {said}.",
                "",
            ]
    return lines


def keda_ratios(react: dict[str, Any]) -> list[str]:
    rows = []
    for n in _sizes(react):
        k, keda = react[n].get("kopfscale"), react[n].get("keda")
        if not k or not keda:
            continue
        kp, ep = k["steady"]["processes"], keda["steady"]["processes"]
        k_rss = sum(v["rss_mib"] for name, v in kp.items() if name == "kopfscale")
        e_rss = sum(v["rss_mib"] for name, v in ep.items() if name.startswith("keda"))
        kcm_k = kp.get("kube-controller-manager", {}).get("cpu_percent", math.nan)
        kcm_e = ep.get("kube-controller-manager", {}).get("cpu_percent", math.nan)
        hpa_share = max(kcm_e - kcm_k, 0.0)  # below 0 is noise: nothing measurable
        keda_cpu = keda["cpu_percent"] + hpa_share
        kcm_req_k = sum(k["steady"].get("kcm_requests_per_min", {}).values())
        kcm_req_e = sum(keda["steady"].get("kcm_requests_per_min", {}).values())
        hpa_requests = max(kcm_req_e - kcm_req_k, 0.0)
        keda_requests = keda["requests_per_min"] + hpa_requests

        def row(what: str, a: float, b: float, digits: int = 0, n: str = n) -> str:
            return (
                f"| {n} | {what} | {num(a, digits)} | {num(b, digits)} | {fmt_ratio(figures.ratio(a, b))} |"
            )

        rows += [
            row("reaction p50 s", st(k["p50_s"]).median, st(keda["p50_s"]).median, 2),
            row("reaction p95 s", st(k["p95_s"]).median, st(keda["p95_s"]).median, 2),
            row("reaction max s", st(k["max_s"]).median, st(keda["max_s"]).median, 2),
            row("kube-controller-manager requests/min beside each (it hosts the HPA)", kcm_req_k, kcm_req_e),
            row("kube-controller-manager CPU % beside each", kcm_k, kcm_e, 1),
            row(
                f"API requests/min, steady (KEDA: operator + metrics server + the HPA's {hpa_requests:.0f})",
                k["requests_per_min"],
                keda_requests,
            ),
            row(
                "writes/min, steady (KEDA: operator + metrics server)",
                k["writes_per_min"],
                keda["writes_per_min"],
            ),
            row(
                f"CPU % of a core, steady (KEDA: both + the HPA's {hpa_share:.1f})",
                k["cpu_percent"],
                keda_cpu,
                1,
            ),
            row("RSS MB (KEDA: both processes)", k_rss * MB_PER_MIB, e_rss * MB_PER_MIB),
        ]
    if not rows:
        return []
    return [
        "kopfscale / KEDA+HPA, same workloads, same polling, same run (the HPA's share: "
        "kube-controller-manager beside KEDA minus beside kopfscale, 0 when not above noise):",
        "",
        "| N | what | kopfscale | KEDA+HPA | kopfscale / KEDA+HPA |",
        "|---|---|---|---|---|",
        *rows,
        "",
        *process_table(react),
    ]


def process_table(react: dict[str, Any]) -> list[str]:
    """CPU % and RSS of every process involved, per subject, at the largest N, steady window."""
    n = _sizes(react)[-1]
    whos = [w for w in REACTION_WHO if w in react[n]]
    names: list[str] = []
    for w in whos:
        for name in react[n][w]["steady"]["processes"]:
            if name not in names:
                names.append(name)
    lines = [
        f"Every process involved at N={n}, steady window: CPU % of a core / RSS MB "
        "(— where it is not involved):",
        "",
        "| process | " + " | ".join(WHO_TEXT[w] for w in whos) + " |",
        "|---|" + "---|" * len(whos),
    ]
    for name in names:
        cells = []
        for w in whos:
            p = react[n][w]["steady"]["processes"].get(name)
            cells.append(f"{num(p['cpu_percent'], 1)} / {num(p['rss_mib'] * MB_PER_MIB, 0)}" if p else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def reaction_writes(react: dict[str, Any], targets: Targets) -> list[str]:
    sizes = [n for n in _sizes(react) if "kopfscale" in react[n]]
    if not sizes:
        return []
    n = sizes[-1]
    whos = [w for w in REACTION_WHO if w in react[n]]
    keys: list[str] = []
    for w in whos:
        for key in react[n][w]["writes_per_reaction"]:
            if key not in keys and key != "total":
                keys.append(key)
    lines = [
        f"Writes per workload reaction at N={n} (all writes during the steps / (N x steps)), by verb and "
        "resource (KEDA: its two processes; the HPA's own scale writes go through kube-controller-manager "
        "and are not in the proxy's counts):",
        "",
        "| write | " + " | ".join(WHO_TEXT[w] for w in whos) + " |",
        "|---|" + "---|" * len(whos),
    ]
    for key in [*keys, "total"]:
        cells = [num(react[n][w]["writes_per_reaction"].get(key, 0.0), 2) for w in whos]
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    total = react[n]["kopfscale"]["writes_per_reaction"].get("total", math.nan)
    poll = react[n].get("poll", {}).get("writes_per_reaction", {}).get("total")
    targets.add(
        f"writes per ScaledApp reaction <= 2 (N={n})",
        num(total, 2),
        f"reference loop {num(poll, 2)}" if poll is not None else "",
        "",
        None if math.isnan(total) else total <= 2,
    )
    return [*lines, ""]


# --- steady, lateness, unrelated -------------------------------------------------------------------------
def steady_section(r: dict[str, Any], targets: Targets) -> list[str]:
    steady = r.get("steady")
    if not steady:
        return []
    k, b = steady["kopfscale"], steady.get("baseline")
    lines = [
        "## 4. Steady state",
        "",
        f"{steady['objects'] // 2} Greeters + {steady['objects'] // 2} ScaledApps (pollingInterval 15 s, "
        f"metric constant), settled; then {len(k['samples'])} windows of {k['window_seconds']:.0f} s. "
        "Per window: median "
        "(min-max); total: the sum over all windows. *Child resourceVersion changes*: every watch event of a "
        "Deployment or Service in the namespace, whoever made it.",
        "",
        "| who | requests / window | reads | writes | child writes | child RV changes | CPU s "
        "| total requests "
        "| total writes | total child RV changes | total CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for who, x in (("kopfscale", k), ("baseline", b)):
        if not x:
            continue
        t = x["totals"]
        lines.append(
            f"| {WHO_TEXT[who]} | {st(x['requests']).fmt(0)} | {st(x['reads']).fmt(0)} "
            f"| {st(x['writes']).fmt(0)} | {st(x['child_writes']).fmt(0)} "
            f"| {st(x['child_rv_changes']).fmt(0)} | {st(x['cpu_seconds']).fmt(1)} "
            f"| {t['requests']} | {t['writes']} | {t['child_rv_changes']} | {t['cpu_seconds']:.1f} |"
        )
    totals: dict[str, int] = {}
    for sample in k["samples"]:
        for key, n in sample["by_key"].items():
            totals[key] = totals.get(key, 0) + n
    lines += [
        "",
        "kopfscale's requests (totals): "
        + (", ".join(f"`{key}` {n}" for key, n in sorted(totals.items(), key=lambda kv: -kv[1])) or "none"),
        "",
    ]
    targets.add(
        "zero child writes in steady state",
        f"{k['totals']['child_writes']} writes, {k['totals']['child_rv_changes']} child RV changes",
        f"baseline {b['totals']['child_writes']} writes" if b else "",
        "",
        k["totals"]["child_writes"] == 0,
    )
    if b:
        fewer = b["totals"]["requests"] / max(k["totals"]["requests"], 1)
        targets.add(
            ">= 20x fewer API requests than the baseline (steady state)",
            str(k["totals"]["requests"]),
            f"baseline {b['totals']['requests']}",
            f"{fewer:.0f}x fewer",
            fewer >= 20,
        )
    return lines


def lateness_section(r: dict[str, Any], targets: Targets) -> list[str]:
    lat = r.get("lateness")
    if not lat:
        return []
    lines = [
        f"## 5. Loop lateness at {lat['scaledapps']} ScaledApps "
        f"(pollingInterval 15 s, + {lat['greeters']} Greeters)",
        "",
    ]
    if not lat.get("exported") or not lat.get("rounds"):
        lines += [f"kopfscale exported no `{lat['metric']}` samples: n/a.", ""]
        targets.add("loop lateness p99 <= 1 s at 2000 ScaledApps", "n/a (not exported)", "", "", None)
        return lines
    lines += [
        f"From kopfscale's `/metrics` histogram `{lat['metric']}` over {lat['seconds']:.0f} s: "
        f"{lat['rounds']:.0f} rounds, p50 {num(lat['p50_s'], 3)} s, **p99 {num(lat['p99_s'], 3)} s** "
        "(interpolated within buckets "
        f"as Prometheus does; per window {short(st(lat['p99_by_window']), 3)}), exactly "
        f"{num(lat['within_1s'] * 100, 2)} % of rounds within 1 s. CPU {lat['cpu_percent']:.1f} % of a core, "
        f"RSS {lat['rss_mib'] * MB_PER_MIB:.0f} MB.",
        "",
    ]
    ok = lat["within_1s"] >= 0.99
    targets.add(
        f"loop lateness p99 <= 1 s at {lat['scaledapps']} ScaledApps (pollingInterval 15 s)",
        f"p99 {num(lat['p99_s'], 3)} s ({num(lat['within_1s'] * 100, 2)} % within 1 s)",
        "",
        "",
        ok,
    )
    return lines


def unrelated_section(r: dict[str, Any], targets: Targets) -> list[str]:
    u = r.get("unrelated")
    if not u:
        return []
    before, during = u["before"], u["during"]
    lines = [
        f"## 6. Only what is ours: {u['objects']} unrelated Deployments + Services",
        "",
        f"kopfscale's windows before, then while {u['objects']} Deployments and Services that are not "
        "its own "
        f"are created in another namespace and scaled 0→1→0 (Services annotated) over and over: "
        f"{u['cycles']} cycles, {u['events']} watch events of theirs (Deployments, Services, Pods) "
        "seen by the "
        "driver. Bytes received: what the proxy streamed to kopfscale (watch events included).",
        "",
        "| | RSS (MB) | CPU % of a core | requests / window | bytes received / window |",
        "|---|---|---|---|---|",
    ]
    for label, x in (("before", before), ("during", during)):
        lines.append(
            f"| {label} | {st(x['rss_mib']).fmt(0, MB_PER_MIB)} | {st(x['cpu_percent']).fmt(1)} "
            f"| {st(x['requests']).fmt(0)} | {st(x.get('bytes_in')).fmt(0)} |"
        )
    rss_b, rss_d = st(before["rss_mib"]).median, st(during["rss_mib"]).median
    cpu_b_hi, cpu_d = st(before["cpu_percent"]).high, st(during["cpu_percent"]).median
    bytes_b, bytes_d = st(before.get("bytes_in")).high, st(during.get("bytes_in")).median
    rss_ok = rss_d - rss_b <= max(5.0, 0.03 * rss_b)
    cpu_ok = cpu_d <= cpu_b_hi + 2.0
    bytes_ok = bytes_d <= 2 * bytes_b + 64 * 1024
    lines += [
        "",
        "Within noise means here: RSS up by at most max(5 MiB, 3 %), CPU median during at most the highest "
        "window before + 2 points, bytes received during at most twice the most before + 64 KiB.",
        "",
    ]
    targets.add(
        f"unrelated objects cost nothing ({u['objects']} Deployments + Services scaled)",
        f"RSS {rss_d * MB_PER_MIB:.0f} MB, CPU {cpu_d:.1f} %, {bytes_d:.0f} B/window",
        f"before: RSS {rss_b * MB_PER_MIB:.0f} MB, CPU <= {cpu_b_hi:.1f} %, {bytes_b:.0f} B/window",
        fmt_ratio(figures.ratio(rss_d, rss_b)) + " RSS",
        rss_ok and cpu_ok and bytes_ok,
    )
    return lines


# --- the plot ---------------------------------------------------------------------------------------
COLORS = {
    "kopfscale": "tab:blue",
    "fresh": "tab:cyan",
    "floor": "tab:gray",
    "raw": "black",
    "minimal": "tab:gray",
    "baseline": "tab:red",
    "poll": "tab:green",
    "direct": "black",
    "keda": "tab:purple",
}


def _errorbar(ax: Any, xs: list[int], stats: list[Stat], style: str, color: str, label: str) -> None:
    ax.errorbar(
        xs,
        [s.median for s in stats],
        yerr=[[s.median - s.low for s in stats], [s.high - s.median for s in stats]],
        fmt=style,
        color=color,
        label=label,
        capsize=3,
    )


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))

    ax = axes[0][0]
    fp = r.get("footprint") or {}
    ns = [n for n in _sizes(fp) if fp[n].get("kopfscale")]
    if ns:
        xs = [int(n) for n in ns]
        for who in ("kopfscale", "fresh", "floor"):
            have = [(int(n), st(fp[n][who]["rss_mib"])) for n in ns if fp[n].get(who)]
            if have:
                _errorbar(
                    ax,
                    [x for x, _ in have],
                    [
                        Stat(s.median * MB_PER_MIB, s.low * MB_PER_MIB, s.high * MB_PER_MIB, s.runs)
                        for _, s in have
                    ],
                    "-o",
                    COLORS[who],
                    {
                        "kopfscale": "kopfscale",
                        "fresh": "kopfscale, fresh start",
                        "floor": "floor: kopf alone",
                    }[who],
                )
        floors = [
            (int(n), st(fp[n]["floor"]["rss_mib"]).median * MB_PER_MIB * 1.25)
            for n in ns
            if fp[n].get("floor")
        ]
        if floors:
            ax.plot([x for x, _ in floors], [y for _, y in floors], ":", color="gray", label="1.25 x floor")
        ax.set(xlabel="objects (half Greeters, half ScaledApps)", ylabel="RSS (MB)", xticks=xs)
        ax.set_title("1. Footprint beside the floor")
        ax.legend(fontsize=8)

    ax = axes[0][1]
    soak = r.get("soak")
    if soak and soak.get("samples"):
        ts = [s["t"] / 60 for s in soak["samples"]]
        ys = [s["rss_mib"] * MB_PER_MIB for s in soak["samples"]]
        ax.plot(ts, ys, "-", color=COLORS["kopfscale"], label="RSS")
        middle = (max(ys) + min(ys)) / 2
        half = max((max(ys) - min(ys)) / 2 * 1.2, 0.05 * middle)  # never zoom noise into a cliff
        ax.set(xlabel="minutes", ylabel="RSS (MB)", ylim=(middle - half, middle + half))
        ax.set_title(
            f"1. Soak at {soak.get('objects', '?')} objects: "
            f"{num(soak['slope_tail_mib_per_min'], 2)} MiB/min at the end"
        )
        ax.legend(fontsize=8)

    ax = axes[0][2]
    b = r.get("burst") or {}
    for who in BURST_WHO:
        runs = b.get(who)
        if not runs:
            continue
        ns = [n for n in _sizes(runs) if int(n) > 1]
        if ns:
            _errorbar(
                ax,
                [int(n) for n in ns],
                [st(runs[n]["summary"]["throughput_children"]) for n in ns],
                "-o",
                COLORS[who],
                WHO_TEXT[who].strip("*"),
            )
    ax.set(xscale="log", xlabel="Greeters created at once", ylabel="Greeters/s (children created)")
    ax.set_title("2. Burst throughput beside its floors")
    if b:
        ax.legend(fontsize=8)

    ax = axes[1][0]
    react = r.get("reaction") or {}
    for who in REACTION_WHO:
        ns = [n for n in _sizes(react) if who in react[n]]
        if ns:
            _errorbar(
                ax,
                [int(n) for n in ns],
                [st(react[n][who]["p95_s"]) for n in ns],
                "-o",
                COLORS[who],
                WHO_TEXT[who].strip("*"),
            )
    interval = r["config"]["polling_interval"]
    ax.axhline(interval + 1, color="gray", lw=0.8, ls=":", label="pollingInterval + 1 s")
    ax.set(
        xscale="log", yscale="log", xlabel="autoscaled workloads", ylabel="metric step → replicas, p95 (s)"
    )
    ax.set_title("3. Reaction beside the floors and KEDA+HPA")
    if react:
        ax.legend(fontsize=8)

    ax = axes[1][1]
    steady = r.get("steady") or {}
    whos = [w for w in ("kopfscale", "baseline") if steady.get(w)]
    if whos:
        keys = ("reads", "writes", "child_writes", "child_rv_changes")
        width = 0.38
        for i, who in enumerate(whos):
            values = [max(steady[who]["totals"][k], 0.5) for k in keys]
            ax.bar([j + i * width for j in range(len(keys))], values, width, color=COLORS[who], label=who)
        ax.set_xticks(
            [j + width / 2 for j in range(len(keys))], ["reads", "writes", "child writes", "child RV changes"]
        )
        ax.set(yscale="log", ylabel=f"total over {steady['kopfscale']['seconds']:.0f} s (0 drawn as 0.5)")
        ax.set_title(f"4. Steady state, {steady['objects']} objects")
        ax.legend(fontsize=8)

    ax = axes[1][2]
    u = r.get("unrelated")
    if u:
        labels = ["RSS", "CPU", "requests", "bytes received"]
        keys = ["rss_mib", "cpu_percent", "requests", "bytes_in"]
        before = [st(u["before"].get(k)).median for k in keys]
        during = [st(u["during"].get(k)).median for k in keys]
        ratios = [
            figures.ratio(d, b) if b else (1.0 if d == 0 else math.nan)
            for b, d in zip(before, during, strict=True)
        ]
        bars = ax.bar(labels, [0 if math.isnan(x) else x for x in ratios], color="tab:orange")
        for bar, b, d in zip(bars, before, during, strict=True):
            ax.annotate(
                f"{num(b, 1)} → {num(d, 1)}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.set(ylabel="during / before (1 = unchanged; 0/0 drawn as 1)")
        ax.set_title(
            f"6. {u['objects']} unrelated Deployments + Services: kopfscale during / before", fontsize=10
        )

    fig.suptitle(f"kopfscale benchmarks — {r['environment']['date']}, commit {r['environment']['commit']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
