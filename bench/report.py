"""Render results.json as the Markdown table (results.md) and the plot (results.png)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.common import Stat

MB_PER_MIB = 1.048576


def st(d: dict[str, Any] | None) -> Stat:
    if not d:
        return Stat(math.nan, math.nan, math.nan, 0)
    return Stat(float(d["median"]), float(d["min"]), float(d["max"]), int(d["runs"]))


def ratio(a: float, b: float) -> str:
    if not b or math.isnan(a) or math.isnan(b):
        return "n/a"
    return f"{a / b:.3g}"


def yes(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**reached**" if ok else "**missed**")


def _sizes(section: dict[str, Any]) -> list[str]:
    return sorted(section, key=int)


def markdown(r: dict[str, Any]) -> str:
    cfg, env = r["config"], r["environment"]
    lines = [
        "# kopfscale benchmarks",
        "",
        f"{env['date']}, commit `{env['commit']}`"
        f"{' (with uncommitted changes)' if env.get('dirty') else ''}, "
        f"{env['cpus']} CPUs ({env['cpu_model']}), {env['memory_gib']} GiB, Python {env['python']}, "
        f"kopf {env['kopf']}. {'**Quick run (small N, smoke only)**' if cfg['quick'] else 'Full run'}; "
        f"took {r.get('seconds', 0) / 60:.0f} min. "
        f"Reproduce: `make bench` (`BENCH_ARGS=--quick` for a smoke run).",
        "",
        f"1-minute load average at the start {env.get('loadavg_at_start', float('nan')):.1f}, after each "
        f"scenario {env.get('loadavg_by_scenario', {})} (other work on the machine skews timings).",
        "",
        *(f"**Note:** {note}" for note in r.get("notes", [])),
        "",
        "Every figure: **median (min-max)** over the runs or windows said in its row; `(1 run)` where "
        "time allowed only one. Latencies are seen by the benchmark driver's own watches on the "
        "apiserver; API requests are counted by a reverse proxy that only the process under test goes "
        "through; CPU and RSS are the process's own (/proc). The *baseline* is bench/baseline.py, a "
        "loop that lists every custom object every second and patches each one unconditionally (the "
        "approach the project grew from), run on the same control plane with the same objects.",
        "",
    ]
    targets: list[tuple[str, str, bool | None]] = []

    burst = r.get("burst")
    if burst:
        lines += [
            "## 1. Greeter create burst",
            "",
            "N Greeters (1 replica each) created at once (the driver posts them 48 at a time). "
            "Latency from the "
            "create's response to the first watch event of the Deployment / Service, and to `Ready=True` "
            "(Pods run on kwok's simulated nodes). Throughput: N / time from the first create to the last "
            "child. Percentiles are over the N objects of a run; median (min-max) over runs.",
            "",
            "| N | runs | who | create→Deployment p50 / p95 / p99 (ms) | create→Service p50 / p95 / p99 (ms) "
            "| create→Ready p50 / p95 / p99 (ms) | Greeters/s (children) | Greeters/s (Ready) | API requests "
            "(writes) | CPU s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for who in ("kopfscale", "baseline"):
            for n in _sizes(burst.get(who, {})):
                s = burst[who][n]["summary"]

                def trio(label: str, s: dict[str, Any] = s) -> str:
                    return " / ".join(st(s[f"{label}_{q}_ms"]).fmt(0) for q in ("p50", "p95", "p99"))

                lines.append(
                    f"| {n} | {s['runs']} | {who}{'' if s['complete'] else ' (incomplete)'} "
                    f"| {trio('deployment')} "
                    f"| {trio('service')} | {trio('ready')} | {st(s['throughput_children']).fmt(1)} "
                    f"| {st(s['throughput_ready']).fmt(1)} | {st(s['requests_total']).fmt(0)} "
                    f"({st(s['requests_writes']).fmt(0)}) | {st(s['cpu_seconds']).fmt(1)} |"
                )
        lines.append("")
        k = burst.get("kopfscale", {})
        if "1" in k:
            p50 = st(k["1"]["summary"]["deployment_p50_ms"]).median
            targets.append(("create→Deployment p50 <= 50 ms (one object)", f"{p50:.0f} ms", p50 <= 50))
        if k:
            biggest = _sizes(k)[-1]
            tput = st(k[biggest]["summary"]["throughput_children"]).median
            targets.append((f">= 100 Greeters/s in a burst (N={biggest})", f"{tput:.0f}/s", tput >= 100))

    react = r.get("reaction")
    if react:
        interval = cfg["polling_interval"]
        lines += [
            "## 3. ScaledApp reaction",
            "",
            f"Every ScaledApp (pollingInterval {interval} s, one `http` metric, AverageValue target 10) "
            f"reads one "
            "shared value; it steps 10→20 (1→2 replicas), then 20→10. Reaction: from the step to the "
            "Deployment's new `spec.replicas` in the driver's watch. Per step, p50/p95/max over the "
            "ScaledApps; median (min-max) over the steps (each run = one step up + one step down). "
            f"Bound: pollingInterval + 1 s = {interval + 1} s.",
            "",
            "| N | steps | who | reaction p50 (s) | p95 (s) | max (s) | all within bound | "
            "API requests/min | "
            "writes/min | CPU % of a core |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for n in sorted({*react.get("kopfscale", {}), *react.get("baseline", {})}, key=int):
            for who in ("kopfscale", "baseline"):
                x = react.get(who, {}).get(n)
                if not x:
                    continue
                lines.append(
                    f"| {n} | {len(x['steps'])} | {who}{'' if x['complete'] else ' (incomplete)'} "
                    f"| {st(x['p50_s']).fmt(2)} | {st(x['p95_s']).fmt(2)} | {st(x['max_s']).fmt(2)} "
                    f"| {'yes' if x['within_bound'] else 'no'} | {x['requests_per_min']:.0f} "
                    f"| {x['writes_per_min']:.0f} | {x['cpu_percent']:.1f} |"
                )
        lines.append("")
        k = react.get("kopfscale", {})
        if k:
            biggest = _sizes(k)[-1]
            worst = st(k[biggest]["max_s"]).high
            targets.append(
                (
                    f"metric step → replicas within pollingInterval + 1 s (N={biggest})",
                    f"worst {worst:.2f} s (bound {interval + 1} s)",
                    bool(k[biggest]["within_bound"]),
                )
            )

    steady = r.get("steady")
    if steady:
        k, b = steady["kopfscale"], steady.get("baseline")
        count = len(k["samples"])
        window = k["window_seconds"]
        lines += [
            "## 2. Steady state",
            "",
            f"{steady['objects'] // 2} Greeters + {steady['objects'] // 2} ScaledApps (pollingInterval 15 s, "
            f"metric constant), settled; then {count} windows of {window:.0f} s. "
            f"Per window: median (min-max); "
            "total: the sum over all windows. *Child resourceVersion changes*: every watch event of a "
            "Deployment or Service in the namespace, whoever made it.",
            "",
            "| who | API requests per window | reads | writes | writes to children | child resourceVersion "
            "changes | CPU s | total requests | total writes | total child writes | total child RV changes "
            "| total CPU s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for who, x in (("kopfscale", k), ("baseline", b)):
            if not x:
                continue
            t = x["totals"]
            lines.append(
                f"| {who} | {st(x['requests']).fmt(0)} | {st(x['reads']).fmt(0)} | {st(x['writes']).fmt(0)} "
                f"| {st(x['child_writes']).fmt(0)} | {st(x['child_rv_changes']).fmt(0)} "
                f"| {st(x['cpu_seconds']).fmt(1)} | {t['requests']} | {t['writes']} | {t['child_writes']} "
                f"| {t['child_rv_changes']} | {t['cpu_seconds']:.1f} |"
            )
        lines += ["", "What kopfscale's requests were (totals over the windows):", ""]
        totals: dict[str, int] = {}
        for sample in k["samples"]:
            for key, n in sample["by_key"].items():
                totals[key] = totals.get(key, 0) + n
        lines.append(
            ", ".join(f"`{key}` {n}" for key, n in sorted(totals.items(), key=lambda kv: -kv[1])) or "none"
        )
        lines.append("")
        targets.append(
            (
                "zero child writes in steady state",
                f"{k['totals']['child_writes']} writes, {k['totals']['child_rv_changes']} child RV changes",
                k["totals"]["child_writes"] == 0,
            )
        )
        rss = st(k["rss_mib"]).median * MB_PER_MIB
        targets.append(
            (
                f"RSS <= 150 MB at {steady['objects'] // 2} Greeters + {steady['objects'] // 2} ScaledApps",
                f"{rss:.0f} MB (peak {k['peak_rss_mib'] * MB_PER_MIB:.0f} MB)",
                rss <= 150,
            )
        )
        if b:
            ratio_requests = b["totals"]["requests"] / max(k["totals"]["requests"], 1)
            targets.append(
                (
                    ">= 20x fewer API requests than the baseline (steady state)",
                    f"{ratio_requests:.0f}x fewer",
                    ratio_requests >= 20,
                )
            )

    fp = r.get("footprint")
    if fp:
        lines += [
            "## 4. Footprint",
            "",
            "kopfscale's RSS and CPU with N objects (half Greeters, half ScaledApps "
            "with pollingInterval 15 s), "
            "settled; median (min-max) over the windows. Peak: the process's VmHWM so far (it was restarted "
            "for the steady scenario and after the baseline's turn).",
            "",
            "*Floor*: bench/floor.py, kopf alone with kopfscale's watches (Greeters, ScaledApps, the "
            "labelled Deployments and Services, filtered server-side) and no-op handlers, started on the "
            "same objects right after kopfscale's windows and measured the same way. Target: kopfscale "
            "<= 1.25 x the floor.",
            "",
            "| objects | windows | RSS (MB) | peak RSS (MB) | floor RSS (MB) | kopfscale / floor "
            "| CPU % of a core | floor CPU % | API requests per window |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        floors = r.get("footprint_floor") or {}
        for n in _sizes(fp):
            x = fp[n]
            f = floors.get(n)
            ratio = st(x["rss_mib"]).median / st(f["rss_mib"]).median if f else None
            lines.append(
                f"| {n} | {len(x['samples'])} x {x['window_seconds']:.0f} s "
                f"| {st(x['rss_mib']).fmt(0, MB_PER_MIB)} "
                f"| {x['peak_rss_mib'] * MB_PER_MIB:.0f} "
                f"| {st(f['rss_mib']).fmt(0, MB_PER_MIB) if f else '-'} "
                f"| {f'{ratio:.2f}' if ratio else '-'} "
                f"| {st(x['cpu_percent']).fmt(1)} | {st(f['cpu_percent']).fmt(1) if f else '-'} "
                f"| {st(x['requests']).fmt(0)} |"
            )
        lines.append("")

    lines += [
        "## 5. kopfscale / baseline",
        "",
        "| what | kopfscale | baseline | kopfscale / baseline |",
        "|---|---|---|---|",
    ]
    if steady and steady.get("baseline"):
        k, b = steady["kopfscale"]["totals"], steady["baseline"]["totals"]
        for label, key in (
            ("API requests, steady state", "requests"),
            ("writes, steady state", "writes"),
            ("CPU seconds, steady state", "cpu_seconds"),
        ):
            digits = 1 if key == "cpu_seconds" else 0
            lines.append(f"| {label} | {k[key]:.{digits}f} | {b[key]:.{digits}f} | {ratio(k[key], b[key])} |")
    if burst and burst.get("baseline"):
        for n in _sizes(burst["baseline"]):
            if n in burst["kopfscale"]:
                ks, bs = burst["kopfscale"][n]["summary"], burst["baseline"][n]["summary"]
                for label, key in (
                    ("API requests", "requests_total"),
                    ("writes", "requests_writes"),
                    ("CPU seconds", "cpu_seconds"),
                ):
                    a, c = st(ks[key]).median, st(bs[key]).median
                    lines.append(f"| {label}, burst N={n} | {a:.0f} | {c:.0f} | {ratio(a, c)} |")
                a, c = st(ks["deployment_p50_ms"]).median, st(bs["deployment_p50_ms"]).median
                lines.append(f"| create→Deployment p50 ms, burst N={n} | {a:.0f} | {c:.0f} | {ratio(a, c)} |")
    if react and react.get("baseline"):
        for n in _sizes(react["baseline"]):
            if n in react["kopfscale"]:
                kx, bx = react["kopfscale"][n], react["baseline"][n]
                a, c = st(kx["p95_s"]).median, st(bx["p95_s"]).median
                lines.append(f"| reaction p95 s, N={n} | {a:.2f} | {c:.2f} | {ratio(a, c)} |")
                lines.append(
                    f"| API requests/min, reaction N={n} | {kx['requests_per_min']:.0f} "
                    f"| {bx['requests_per_min']:.0f} "
                    f"| {ratio(kx['requests_per_min'], bx['requests_per_min'])} |"
                )
                lines.append(
                    f"| CPU % of a core, reaction N={n} | {kx['cpu_percent']:.1f} | {bx['cpu_percent']:.1f} "
                    f"| {ratio(kx['cpu_percent'], bx['cpu_percent'])} |"
                )
    lines += ["", "## Targets", "", "| target | measured | |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {yes(ok)} |" for name, value, ok in targets]
    lines += ["", "![results](results.png)", ""]
    return "\n".join(lines)


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    colors = {"kopfscale": "tab:blue", "baseline": "tab:red"}

    ax = axes[0][0]
    for who, runs in (r.get("burst") or {}).items():
        ns = _sizes(runs)
        xs = [int(n) for n in ns]
        for q, style in (("p50", "-o"), ("p99", "--^")):
            ys = [st(runs[n]["summary"][f"deployment_{q}_ms"]) for n in ns]
            ax.errorbar(
                xs,
                [y.median for y in ys],
                yerr=[[y.median - y.low for y in ys], [y.high - y.median for y in ys]],
                fmt=style,
                color=colors[who],
                label=f"{who} {q}",
                capsize=3,
            )
    ax.axhline(50, color="gray", lw=0.8, ls=":", label="target p50 (N=1)")
    ax.set(xscale="log", yscale="log", xlabel="Greeters created at once", ylabel="create → Deployment (ms)")
    ax.set_title("1. Create burst")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    react = r.get("reaction") or {}
    for who, levels in react.items():
        ns = _sizes(levels)
        if not ns:
            continue
        xs = [int(n) for n in ns]
        for key, style in (("p50_s", "-o"), ("max_s", "--^")):
            ys = [st(levels[n][key]) for n in ns]
            ax.errorbar(
                xs,
                [y.median for y in ys],
                yerr=[[y.median - y.low for y in ys], [y.high - y.median for y in ys]],
                fmt=style,
                color=colors[who],
                label=f"{who} {key[:-2]}",
                capsize=3,
            )
    interval = r["config"]["polling_interval"]
    ax.axhline(interval + 1, color="gray", lw=0.8, ls=":", label="pollingInterval + 1 s")
    ax.set(xscale="log", yscale="log", xlabel="ScaledApps", ylabel="metric step → replicas (s)")
    ax.set_title("3. ScaledApp reaction")
    ax.legend(fontsize=8)

    ax = axes[1][0]
    steady = r.get("steady") or {}
    whos = [w for w in ("kopfscale", "baseline") if steady.get(w)]
    if whos:
        keys = ("reads", "writes", "child_writes", "child_rv_changes")
        width = 0.38
        for i, who in enumerate(whos):
            values = [max(steady[who]["totals"][k], 0.5) for k in keys]
            ax.bar([j + i * width for j in range(len(keys))], values, width, color=colors[who], label=who)
        ax.set_xticks(
            [j + width / 2 for j in range(len(keys))], ["reads", "writes", "child writes", "child RV changes"]
        )
        ax.set(yscale="log", ylabel=f"total over {steady['kopfscale']['seconds']:.0f} s (0 drawn as 0.5)")
        ax.set_title(f"2. Steady state, {steady['objects']} objects")
        ax.legend(fontsize=8)

    ax = axes[1][1]
    fp = r.get("footprint") or {}
    if fp:
        ns = _sizes(fp)
        xs = [int(n) for n in ns]
        rss = [st(fp[n]["rss_mib"]).median * MB_PER_MIB for n in ns]
        peak = [fp[n]["peak_rss_mib"] * MB_PER_MIB for n in ns]
        ax.plot(xs, rss, "-o", color="tab:blue", label="RSS (MB)")
        ax.plot(xs, peak, "--^", color="tab:cyan", label="peak RSS (MB)")
        floors = r.get("footprint_floor") or {}
        floor_ns = [n for n in ns if n in floors]
        if floor_ns:
            floor_rss = [st(floors[n]["rss_mib"]).median * MB_PER_MIB for n in floor_ns]
            ax.plot([int(n) for n in floor_ns], floor_rss, "-.x", color="tab:gray", label="floor: kopf alone")
        ax.axhline(150, color="gray", lw=0.8, ls=":", label="150 MB")
        ax.set(xlabel="objects (half Greeters, half ScaledApps)", ylabel="MB")
        ax2 = ax.twinx()
        ax2.plot(xs, [st(fp[n]["cpu_percent"]).median for n in ns], "-s", color="tab:orange", label="CPU %")
        ax2.set_ylabel("CPU % of a core")
        ax.set_title("4. Footprint (kopfscale)")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")

    fig.suptitle(f"kopfscale benchmarks — {r['environment']['date']}, commit {r['environment']['commit']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
