"""The shadow's report: markdown, one PNG of every pair's two timelines, and the JSON behind them."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.shadow import classify as c
from bench.shadow import scenarios
from bench.shadow.analyse import Result, Tick, finite
from bench.shadow.model import CPU_PODS_NOTE, Recording
from bench.shadow.scenarios import CPU_REQUEST_MILLICORES

COLUMNS = (
    "peer decisions",
    "paired",
    "kopfscale changes",
    c.MATCH,
    c.TIMING,
    c.IMPROVEMENT,
    c.BUG,
    "unpaired",
)
FALLBACK_COLUMNS = {"fallback counts compared": "compared", "fallback match": c.MATCH, "fallback bug": c.BUG}


def _inputs(t: Tick) -> str:
    p = t.peer
    if p.disabled:
        value = "workload at 0"
    elif p.failed:
        value = "read failed" + (" (fallback)" if p.fallback else "")
    elif p.value is None:
        value = "?"
    else:
        value = f"{p.value:g}"
    pods = ""
    if p.pods is not None:
        pods = f", Pods {p.pods.pods} / ready {p.pods.ready} / metrics {p.pods.with_metrics}"
        pods += f" / new {p.pods.fresh}" if p.pods.fresh else ""
    return f"current {p.current}, {value}{pods}"


def _verdict(v: c.Verdict) -> str:
    text = v.category
    if v.row:
        text += f" ([{v.row}](../../{c.DOC}))"
    if v.known:
        text += f" (known: {v.known})"
    return text


def markdown(results: Sequence[Result], meta: Mapping[str, Any], image: str = "shadow.png") -> str:
    lines = [
        "# Shadow: kopfscale in mode Observe beside the HPA and KEDA",
        "",
        f"`{meta.get('command', 'make shadow')}` on {meta.get('date', '?')}: trace "
        f"`{meta.get('trace', '?')}`, {meta.get('seconds', 0):.0f} s of trace, kopfscale "
        f"{meta.get('commit', '?')}, Kubernetes {meta.get('kubernetes', '?')}, KEDA {meta.get('keda', '?')}; "
        f"the whole run took {meta.get('wall', 0):.0f} s. How it works and how to read it: "
        "[docs/shadow.md](../../docs/shadow.md)."
        + (f" Classified again by {meta['reclassified']} (`--from`)." if meta.get("reclassified") else ""),
        "",
        "Each peer decision (a change of the deciding HPA's status) is paired with the kopfscale decision "
        "on the **same inputs** (count, metric value or failures, Pods' state) that stood nearest in time; "
        "unpaired ones are decisions whose inputs kopfscale never saw. *kopfscale changes* are kopfscale "
        "decisions made while the peer's decision on the same inputs stood (the HPA writes no status "
        "then), compared with it. Each divergence is classified by the first rule below that explains "
        "it; what none explains is a kopfscale bug.",
        "",
        "| pair | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    totals = dict.fromkeys(COLUMNS, 0)
    for r in results:
        counts = r.counts()
        for k in COLUMNS:
            totals[k] += counts[k]
        lines.append(
            f"| `{r.scenario.name}`: {r.scenario.title} | "
            + " | ".join(str(counts[k]) for k in COLUMNS)
            + " |"
        )
    lines.append("| **all** | " + " | ".join(f"**{totals[k]}**" for k in COLUMNS) + " |")
    onsets = [r for r in results if r.fallback]
    if onsets:
        lines += [
            "",
            "When each side falls back, compared count by count of failed reads in a row (an HPA decision "
            "shows KEDA's fallback only at the HPA's own syncs):",
            "",
            "| pair | " + " | ".join(FALLBACK_COLUMNS.values()) + " |",
            "|---|" + "---:|" * len(FALLBACK_COLUMNS),
        ]
        for r in onsets:
            counts = r.counts()
            lines.append(
                f"| `{r.scenario.name}` | " + " | ".join(str(counts[k]) for k in FALLBACK_COLUMNS) + " |"
            )
    bugs = [v for r in results for v in r.bugs]
    known = [v for v in bugs if v.known]
    which = ", ".join(sorted({v.rule for v in known}))
    lines += [
        "",
        f"**Unexplained divergences (kopfscale bugs): {len(bugs)}**"
        + (f", of which {len(known)} known ({which}; removed by {c.FIDELITY})" if known else "")
        + ".",
        "",
        f"![every pair: the peer's count and decisions, kopfscale's decisions, the metric]({image})",
        "",
        "## Divergences",
        "",
    ]
    for r in results:
        lines.append(f"### `{r.scenario.name}`")
        lines.append("")
        if not r.divergences:
            lines += ["None: every paired decision matched.", ""]
        else:
            lines += [
                "| t (s) | inputs | peer | kopfscale | class | rule | why |",
                "|---:|---|---|---|---|---|---|",
            ]
            for t in r.divergences:
                assert t.kopf is not None and t.verdict is not None
                when = f"{t.at:.1f}" + (" (kopfscale changed)" if t.origin == "kopfscale" else "")
                lines.append(
                    f"| {when} | {_inputs(t)} | {t.peer.current} → {t.peer.desired} | "
                    f"{t.kopf.current} → {t.kopf.desired} | {_verdict(t.verdict)} | {t.verdict.rule} | "
                    f"{t.verdict.why} |"
                )
            lines.append("")
        if r.fallback:
            lines += [
                "Fallback onset, count by count (KEDA's `status.health` and `Fallback` condition; "
                "kopfscale's `status.metrics[].fallback`):",
                "",
                "| episode | failures in a row | KEDA | kopfscale | class |",
                "|---:|---:|---|---|---|",
            ]
            for f in r.fallback:
                keda = "fallback" if f.keda.fallback else "error (hold)"
                kopf = "fallback" if f.kopf.fallback else "error (hold)"
                lines.append(
                    f"| {f.episode + 1} | {f.kopf.failures} | {keda} | {kopf} | {_verdict(f.verdict)} |"
                )
            lines.append("")
    lines += ["## The rules, in the order they are tried", ""]
    for category, name, text in c.describe_rules():
        lines.append(f"- **{name}** ({category}): {text}")
    lines += ["", f"CPU Pods' state: {CPU_PODS_NOTE}", ""]
    return "\n".join(lines)


def write_json(
    path: Path, results: Sequence[Result], recordings: Mapping[str, Recording], meta: Mapping[str, Any]
) -> None:
    document = {
        "meta": dict(meta),
        "scenarios": [scenarios.to_json(r.scenario) for r in results],
        "results": [r.to_json() for r in results],
        "recordings": {name: rec.to_json() for name, rec in recordings.items()},
    }
    # Compact: every status snapshot of a run is in it (about 0.7 MB; git stores it compressed).
    text = json.dumps(finite(document), sort_keys=True, separators=(",", ":"), allow_nan=False)
    path.write_text(text + "\n")


COLORS = {c.MATCH: "#2ca02c", c.TIMING: "#7f7f7f", c.IMPROVEMENT: "#1f77b4", c.BUG: "#d62728"}


def plot(results: Sequence[Result], recordings: Mapping[str, Recording], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 1, figsize=(12, 3.6 * len(results)), squeeze=False)
    for ax, r in zip(axes[:, 0], results, strict=True):
        s, rec = r.scenario, recordings[r.scenario.name]
        end = s.duration
        # The peer's actual count (the workload's spec.replicas).
        times = [t for t, _, _ in rec.workload if t <= end]
        counts = [n for t, n, _ in rec.workload if t <= end]
        if times:
            ax.step(
                [*times, end],
                [*counts, counts[-1]],
                where="post",
                color="black",
                lw=1.5,
                label="workload (the peer acts)",
            )
        # kopfscale's decisions, each standing until the next.
        for i, k in enumerate(d for d in r.kopf if d.time <= end):
            until = min(k.until, end)
            ax.hlines(
                k.desired,
                k.time,
                until,
                color="#ff7f0e",
                lw=2.5,
                alpha=0.8,
                label="kopfscale (Observe): desired" if i == 0 else None,
            )
        # The peer's decisions, coloured by verdict (hollow: unpaired).
        seen: set[str] = set()
        for t in r.ticks:
            if t.at > end or t.at < 0:
                continue
            category = t.verdict.category if t.verdict else "unpaired"
            label = f"peer decision: {category}" if category not in seen else None
            seen.add(category)
            if t.verdict is None:
                ax.plot(t.at, t.peer.desired, "o", mfc="none", mec="#9467bd", ms=7, label=label)
            else:
                ax.plot(
                    t.at,
                    t.peer.desired,
                    "o" if category == c.MATCH else "X",
                    color=COLORS[category],
                    ms=7 if category == c.MATCH else 10,
                    label=label,
                )
        ax.set_xlim(0, end)
        ax.set_ylim(-0.3, s.max_replicas + 0.8)
        ax.set_ylabel("replicas")
        ax.set_title(f"{s.name}: {s.title}", fontsize=10)
        # The metric as the trace served it.
        twin = ax.twinx()
        xs: list[float] = []
        ys: list[float] = []
        for index, (start, step) in enumerate(rec.steps):
            stop = rec.steps[index + 1][0] if index + 1 < len(rec.steps) else end
            value = s.steps[step].value
            if value is not None:
                shown = value / CPU_REQUEST_MILLICORES * 100 if s.metric == "cpu" else value
                xs += [start, stop]
                ys += [shown, shown]
            else:
                twin.axvspan(start, stop, color="#d62728", alpha=0.08)
                xs.append(math.nan)
                ys.append(math.nan)
        twin.plot(xs, ys, color="#17becf", lw=1, ls="--")
        unit = "CPU % of request" if s.metric == "cpu" else f"metric ({s.target_type} {s.target:g})"
        twin.set_ylabel(unit, color="#17becf")
        ax.legend(loc="upper left", fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("seconds into the trace (shaded: the endpoint fails)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
