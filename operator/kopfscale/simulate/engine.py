"""The tick loop: the operator's round, replayed over a trace with a simulated clock. Pure.

One tick per ``pollingInterval`` from the trace's first row to its last. Each tick reads every
metric at that instant (:mod:`kopfscale.simulate.sources`), runs the policy's round function
(``policy.step``: the operator's decide-then-record-the-scale-event), and carries the history and
the replica count to the next tick: ``mode: Auto`` scales to the decision, ``mode: Observe`` keeps
the count (the operator never scales then). The history starts empty, as a new ScaledApp's does,
so the first scale-down window holds the starting count exactly as the operator would.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from functools import cached_property

from kopfscale.scaledapp import decision_record, policy
from kopfscale.scaledapp.history import History
from kopfscale.scaledapp.policy import Decision
from kopfscale.scaledapp.spec import ScaledAppSpec
from kopfscale.simulate import sources
from kopfscale.simulate.trace import Trace

MAX_TICKS = 1_000_000  # a week at 1 s; beyond that the trace or the interval is surely a mistake


@dataclass(frozen=True)
class Tick:
    index: int
    offset: float  # seconds since the trace's time 0
    time: datetime.datetime
    decision: Decision
    replicas: int  # the count after this tick (Auto: the decision; Observe: unchanged)

    @property
    def current(self) -> int:
        return self.decision.current

    @property
    def scaled(self) -> bool:
        return self.replicas != self.current

    @cached_property
    def constraints(self) -> tuple[decision_record.Constraint, ...]:
        return decision_record.constraints(self.decision)

    @property
    def limited_by(self) -> str | None:
        return self.constraints[-1].short if self.constraints else None

    @property
    def raw_desired(self) -> int:
        return decision_record.raw_desired(self.decision)


@dataclass(frozen=True)
class Run:
    name: str  # the manifest (file) this run simulated
    spec: ScaledAppSpec
    trace: Trace
    ticks: tuple[Tick, ...]


def default_start_replicas(spec: ScaledAppSpec) -> int:
    """What a new ScaledApp starts at: its owned Deployment is created with max(minReplicas, 1)."""
    return max(spec.min_replicas, 1)


def tick_offsets(trace: Trace, interval: int) -> list[float]:
    first, last = trace.times[0], trace.times[-1]
    count = int((last - first) // interval) + 1
    if count > MAX_TICKS:
        raise ValueError(f"{count} ticks: the trace is too long for pollingInterval {interval}s")
    return [first + k * interval for k in range(count)]


def run(
    spec: ScaledAppSpec,
    trace: Trace,
    *,
    name: str = "",
    start_replicas: int | None = None,
    created: datetime.datetime | None = None,
    history: History | None = None,
) -> Run:
    current = default_start_replicas(spec) if start_replicas is None else start_replicas
    history = history if history is not None else History()
    created = created if created is not None else trace.at(trace.times[0])
    ticks: list[Tick] = []
    for index, offset in enumerate(tick_offsets(trace, spec.polling_interval)):
        now = trace.at(offset)
        row = trace.index_at(offset)
        readings = [sources.read(m, trace, row, now) for m in spec.metrics]
        decision = policy.step(spec, current, readings, history, now=now, created=created)
        history = decision.history
        replicas = decision.desired if spec.mode == "Auto" else current
        ticks.append(Tick(index, offset, now, decision, replicas))
        current = replicas
    return Run(name=name, spec=spec, trace=trace, ticks=tuple(ticks))
