"""A run as a table (for people), JSON (for programs, stable keys) or CSV (for spreadsheets). Pure.

JSON is a list with one object per tick; the keys are stable (new ones may be added, none renamed):
``time`` (RFC 3339), ``offsetSeconds``, ``currentReplicas``, ``metrics`` (per metric: ``name``,
``type``, ``value``, ``target``, ``proposal``, ``ratio``, ``pods``, ``active``, ``withinTolerance``,
``error``, ``fallback``), ``rawDesiredReplicas``, ``recommendation``, ``stabilizedReplicas``,
``desiredReplicas``, ``replicas``, ``scaled``, ``limitedBy``, ``constraints``, ``reason``,
``message`` and ``lastDecision`` (what the operator writes to ``status.lastDecision``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from kopfscale.scaledapp import status as st
from kopfscale.scaledapp.history import fmt_time
from kopfscale.scaledapp.policy import MetricEvaluation
from kopfscale.simulate.engine import Run, Tick
from kopfscale.simulate.summary import Summary, summarize


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 6)


def _short(x: float) -> str:
    return f"{x:.4g}"


def metric_object(m: MetricEvaluation) -> dict[str, Any]:
    return {
        "name": m.name,
        "type": m.type,
        "value": None if m.value is None else _num(m.value),
        "target": None if m.target is None else {"type": m.target.type, "value": _num(m.target.value)},
        "proposal": m.recommendation,
        "ratio": None if m.ratio is None else round(m.ratio, 4),
        "pods": m.pods,
        "active": m.active,
        "withinTolerance": m.within_tolerance,
        "error": m.error,
        "fallback": m.fallback,
    }


def tick_object(t: Tick, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """One tick; ``previous`` is the tick before's ``lastDecision`` (its ``time`` is kept while the
    decision is the same, as the operator keeps it)."""
    d = t.decision
    return {
        "time": fmt_time(t.time),
        "offsetSeconds": _num(t.offset),
        "currentReplicas": t.current,
        "metrics": [metric_object(m) for m in d.metrics],
        "rawDesiredReplicas": t.raw_desired,
        "recommendation": d.recommendation,
        "stabilizedReplicas": d.stabilized,
        "desiredReplicas": d.desired,
        "replicas": t.replicas,
        "scaled": t.scaled,
        "limitedBy": t.limited_by,
        "constraints": [{"type": c.type, "replicas": c.replicas} for c in t.constraints],
        "reason": d.reason,
        "message": d.explanation,
        "lastDecision": st.decision_status(d, t.time, previous),
    }


def tick_objects(run: Run) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for t in run.ticks:
        objects.append(tick_object(t, objects[-1]["lastDecision"] if objects else None))
    return objects


def to_json(run: Run) -> str:
    return json.dumps(tick_objects(run), indent=2) + "\n"


def summary_object(s: Summary) -> dict[str, Any]:
    return {
        "ticks": s.ticks,
        "durationSeconds": _num(s.duration_seconds),
        "replicaMinutes": _num(s.replica_minutes),
        "changes": s.changes,
        "secondsAboveTarget": _num(s.seconds_above_target),
        "peakReplicas": s.peak_replicas,
        "finalReplicas": s.final_replicas,
    }


def compare_json(runs: Sequence[Run]) -> str:
    return (
        json.dumps(
            [
                {
                    "manifest": r.name,
                    "summary": summary_object(summarize(r)),
                    "ticks": tick_objects(r),
                }
                for r in runs
            ],
            indent=2,
        )
        + "\n"
    )


def _time_label(run: Run, t: Tick) -> str:
    if run.trace.absolute:
        return fmt_time(t.time).replace(".000Z", "Z")
    return f"{t.offset:g}s"


def _metric_cell(m: MetricEvaluation) -> str:
    if m.error is not None:
        return f"fail->{m.recommendation}" if m.fallback else "fail"
    assert m.value is not None
    return f"{_short(m.value)}->{m.recommendation}"


def _table(header: list[str], rows: list[list[str]], wrap_last: bool = False) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def to_table(run: Run) -> str:
    names = [m.name for m in run.spec.metrics]
    header = [
        "time",
        *(f"{n}->proposal" for n in names),
        "raw",
        "limited-by",
        "replicas",
        "reason",
        "message",
    ]
    rows = []
    for t in run.ticks:
        d = t.decision
        replicas = f"{t.current}->{t.replicas}" if t.scaled else str(t.replicas)
        if not t.scaled and d.desired != t.current:
            replicas += f" (would {d.desired})"
        rows.append(
            [
                _time_label(run, t),
                *(_metric_cell(m) for m in d.metrics),
                str(t.raw_desired),
                t.limited_by or "-",
                replicas,
                d.reason,
                d.explanation,
            ]
        )
    return _table(header, rows) + "\n" + summary_text([run])


def summary_text(runs: Sequence[Run]) -> str:
    summaries = [summarize(r) for r in runs]
    header = ["", *(r.name for r in runs)]
    rows = [
        ["replica-minutes", *(f"{s.replica_minutes:g}" for s in summaries)],
        ["changes", *(str(s.changes) for s in summaries)],
        ["time above target", *(_duration(s.seconds_above_target) for s in summaries)],
        ["peak replicas", *(str(s.peak_replicas) for s in summaries)],
        ["final replicas", *(str(s.final_replicas) for s in summaries)],
        ["ticks", *(f"{s.ticks} x {r.spec.polling_interval}s" for s, r in zip(summaries, runs, strict=True))],
    ]
    return _table(header, rows)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def compare_table(runs: Sequence[Run]) -> str:
    """The ticks side by side (one replicas/limited-by pair per policy), then the summary."""
    first = runs[0]
    names = [
        m.name for m in first.spec.metrics if all(m.name in [x.name for x in r.spec.metrics] for r in runs)
    ]
    header = ["time", *names]
    for r in runs:
        header += [f"{r.name} replicas", "limited-by"]
    rows = []
    for index, t in enumerate(first.ticks):
        values = {m.name: m for m in t.decision.metrics}
        row = [_time_label(first, t), *(_value(values[n]) for n in names)]
        for r in runs:
            other = r.ticks[index] if index < len(r.ticks) else None
            if other is None:
                row += ["", ""]
            else:
                row += [
                    f"{other.current}->{other.replicas}" if other.scaled else str(other.replicas),
                    other.limited_by or "-",
                ]
        rows.append(row)
    return _table(header, rows) + "\n" + summary_text(runs)


def _value(m: MetricEvaluation) -> str:
    return "fail" if m.value is None else _short(m.value)


def to_csv(run: Run) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = [m.name for m in run.spec.metrics]
    writer.writerow(
        [
            "time",
            "offsetSeconds",
            "currentReplicas",
            *(f"{n}.{k}" for n in names for k in ("value", "proposal", "error")),
            "rawDesiredReplicas",
            "recommendation",
            "stabilizedReplicas",
            "desiredReplicas",
            "replicas",
            "limitedBy",
            "reason",
            "message",
        ]
    )
    for t in run.ticks:
        d = t.decision
        metric_cells = []
        for m in d.metrics:
            metric_cells += [
                "" if m.value is None else _num(m.value),
                "" if m.recommendation is None else m.recommendation,
                m.error or "",
            ]
        writer.writerow(
            [
                fmt_time(t.time),
                _num(t.offset),
                t.current,
                *metric_cells,
                t.raw_desired,
                d.recommendation,
                d.stabilized,
                d.desired,
                t.replicas,
                t.limited_by or "",
                d.reason,
                d.explanation,
            ]
        )
    return out.getvalue()
