"""The flapping detector's replay: a ScaledApp's recorded recommendations run again through the
simulator with another scale-down window (what ``Flapping=True``'s suggestion is computed with).

Lives with the simulator and is handed to the ScaledApp controller by the composition root
(``kopfscale.app.wire``), so the operator's loop depends on an interface, not on this tool.
"""

from __future__ import annotations

from dataclasses import replace

from kopfscale.scaledapp.flapping import Move, Tracker, direction_changes
from kopfscale.scaledapp.spec import ScaledAppSpec
from kopfscale.simulate import engine, replay
from kopfscale.simulate.trace import Trace


def replay_changes(tracker: Tracker, spec: ScaledAppSpec, window: int) -> int:
    """Direction changes of the window's recommendations replayed with a scale-down ``window``."""
    first = tracker.rounds[0]
    trace = Trace(
        "recorded recommendations",
        tuple((r.time - first.time).total_seconds() for r in tracker.rounds),
        {replay.METRIC: tuple(float(r.recommendation) for r in tracker.rounds)},
        first.time,
        absolute=True,
    )
    candidate = replay.replay_spec(spec)
    down = replace(candidate.behavior.scale_down, stabilization_window_seconds=window)
    # Suggesting a window means writing `behavior`: the replay leaves the legacy rule too.
    behavior = replace(candidate.behavior, scale_down=down, legacy=False)
    candidate = replace(candidate, mode="Auto", paused=False, behavior=behavior)
    run = engine.run(candidate, trace, start_replicas=first.current)
    return direction_changes([Move(t.time, t.current, t.replicas) for t in run.ticks if t.scaled])
