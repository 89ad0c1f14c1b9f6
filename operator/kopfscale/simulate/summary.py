"""What a run cost and how well it served, in three numbers a user compares policies by. Pure.

- replica-minutes: the replicas running after each tick, held until the next one
  (``sum(replicas) * pollingInterval / 60``): what the policy paid for.
- changes: ticks at which the count changed (scale events; none in Observe mode).
- time above target: seconds during which some metric was above its target for the replicas
  serving at that time (its ratio > 1; at zero replicas, an active metric). Cron metrics have
  no target and do not count.
"""

from __future__ import annotations

from dataclasses import dataclass

from kopfscale.simulate.engine import Run, Tick


@dataclass(frozen=True)
class Summary:
    ticks: int
    duration_seconds: float
    replica_minutes: float
    changes: int
    seconds_above_target: float
    peak_replicas: int
    final_replicas: int


def above_target(tick: Tick) -> bool:
    for m in tick.decision.metrics:
        if m.error is not None or m.target is None:
            continue
        if m.ratio is not None and m.ratio > 1.0:
            return True
        if m.ratio is None and tick.current == 0 and m.active:
            return True
    return False


def summarize(run: Run) -> Summary:
    interval = float(run.spec.polling_interval)
    ticks = run.ticks
    return Summary(
        ticks=len(ticks),
        duration_seconds=len(ticks) * interval,
        replica_minutes=round(sum(t.replicas for t in ticks) * interval / 60.0, 3),
        changes=sum(1 for t in ticks if t.scaled),
        seconds_above_target=sum(interval for t in ticks if above_target(t)),
        peak_replicas=max((t.replicas for t in ticks), default=0),
        final_replicas=ticks[-1].replicas if ticks else 0,
    )
