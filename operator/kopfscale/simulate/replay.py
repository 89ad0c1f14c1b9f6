"""Replaying what a ScaledApp recorded: its status history as a trace. Pure (the read is in cluster.py).

``status.history.recommendations`` holds every combined recommendation of the last stabilization
window (equal consecutive ones as one segment: ``replicas``, ``since``, ``until``). They are what
the metrics asked for after tolerance and activation, so the replay feeds them back as one
synthetic metric (``recommendation``, an ``AverageValue`` of 1 per replica, tolerance 0) to a
policy whose bounds, windows, rate limits and cooldown are the manifest's: "what would these
behaviour settings have done with the same demand?". Only as much as the status keeps can be
replayed (the longest window or policy period).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from kopfscale.scaledapp.history import History
from kopfscale.scaledapp.sources import parse_source
from kopfscale.scaledapp.spec import MetricSpec, ScaledAppSpec, Target
from kopfscale.simulate.errors import InputError
from kopfscale.simulate.trace import Trace

METRIC = "recommendation"


def replay_spec(spec: ScaledAppSpec) -> ScaledAppSpec:
    """``spec`` with its metrics replaced by the recorded recommendation (already past tolerance)."""
    # An http metric (a total per replica) that is never read: the trace supplies every value.
    raw = {
        "name": METRIC,
        "type": "http",
        "http": {"url": "http://127.0.0.1/replayed", "valueLocation": "$.v"},
        "target": {"type": "AverageValue", "value": 1},
    }
    metric = MetricSpec(
        name=METRIC,
        type="http",
        target=Target("AverageValue", 1.0),
        activation_threshold=0.0,
        raw=raw,
        source=parse_source(raw),
    )
    behavior = replace(
        spec.behavior,
        scale_up=replace(spec.behavior.scale_up, tolerance=0.0),
        scale_down=replace(spec.behavior.scale_down, tolerance=0.0),
    )
    return replace(spec, metrics=(metric,), behavior=behavior, fallback=None)


def trace_from_status(status: Mapping[str, Any], source: str, now: datetime.datetime) -> Trace:
    history = History.from_status(status.get("history"), now)
    if not history.recommendations:
        raise InputError(f"{source}: status.history has no recorded recommendations to replay")
    return trace_from_history(history, source)


def trace_from_history(history: History, source: str) -> Trace:
    """The recommendations of ``history`` (at least one) as a trace of the ``recommendation`` metric."""
    segments = history.recommendations
    start = segments[0].since
    times: list[float] = []
    values: list[float | None] = []
    for segment in segments:
        for moment in (segment.since, segment.until):
            offset = (moment - start).total_seconds()
            if times and offset <= times[-1]:
                continue
            times.append(offset)
            values.append(float(segment.replicas))
    return Trace(source, tuple(times), {METRIC: tuple(values)}, start, True)


def start_replicas(status: Mapping[str, Any], trace: Trace, now: datetime.datetime) -> int | None:
    """The count at the trace's start: today's count minus the scale events recorded since then."""
    replicas = status.get("replicas")
    if not isinstance(replicas, int):
        return None
    history = History.from_status(status.get("history"), now)
    changed = sum(e.change for e in history.scale_events if e.time >= trace.start)
    return max(replicas - changed, 0)
