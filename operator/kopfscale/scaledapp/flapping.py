"""Flapping: a ScaledApp whose count keeps changing direction, and what would have stopped it. Pure.

Every round feeds :func:`assess` the decision. A *move* is a round whose decision differs from the
current count (in ``mode: Observe``, the move it would make); a *direction change* is a move in
the opposite direction of the move before it. More than ``changes`` direction changes within the
last ``window`` seconds is flapping: the ``Flapping`` condition turns ``True`` (one ``Flapping``
Warning event per episode) with a suggestion, and it turns ``False`` again by itself once the
window holds no more than ``changes`` of them.

The suggestion comes from the simulator: the recommendations this ScaledApp made during the window
(what its metrics asked for) are replayed (:mod:`kopfscale.simulate.replay`) with longer
``behavior.scaleDown.stabilizationWindowSeconds``; the shortest window that keeps the replay
within ``changes`` direction changes is named.

Defaults (per ScaledApp, annotations override them; ``0`` changes disables the detector):

- ``kopfscale.dev/flapping-changes: "3"``: more than 3 direction changes ...
- ``kopfscale.dev/flapping-window-seconds: "600"``: ... within 10 minutes.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from kopfscale.conditions import Condition, make_condition
from kopfscale.scaledapp.policy import Decision
from kopfscale.scaledapp.spec import ScaledAppSpec

CONDITION = "Flapping"
EVENT_REASON = "Flapping"
ANNOTATION_CHANGES = "kopfscale.dev/flapping-changes"
ANNOTATION_WINDOW = "kopfscale.dev/flapping-window-seconds"
ANNOTATIONS = (ANNOTATION_CHANGES, ANNOTATION_WINDOW)  # every annotation of the ScaledApp read here
DEFAULT_CHANGES = 3
DEFAULT_WINDOW_SECONDS = 600
#: The scale-down windows the suggestion tries, shortest first (the CRD allows up to 3600 s).
CANDIDATE_WINDOWS = (30, 60, 120, 180, 300, 600, 900, 1800, 3600)


@dataclass(frozen=True)
class Settings:
    changes: int = DEFAULT_CHANGES  # N: more than N direction changes ...
    window_seconds: int = DEFAULT_WINDOW_SECONDS  # ... within this many seconds is flapping
    problem: str | None = None  # an unusable annotation (the defaults apply instead)

    @property
    def enabled(self) -> bool:
        return self.changes > 0


def settings(annotations: Mapping[str, Any] | None) -> Settings:
    """The detector's settings from the ScaledApp's annotations; a bad value keeps the default."""
    annotations = annotations or {}
    values = {ANNOTATION_CHANGES: DEFAULT_CHANGES, ANNOTATION_WINDOW: DEFAULT_WINDOW_SECONDS}
    problems = []
    for key, default in list(values.items()):
        raw = annotations.get(key)
        if raw is None:
            continue
        try:
            number = int(str(raw).strip())
        except ValueError:
            number = -1
        minimum = 0 if key == ANNOTATION_CHANGES else 1
        if number < minimum:
            problems.append(f"annotation {key}: {raw!r} is not an integer >= {minimum} (using {default})")
        else:
            values[key] = number
    return Settings(values[ANNOTATION_CHANGES], values[ANNOTATION_WINDOW], "; ".join(problems) or None)


@dataclass(frozen=True)
class Move:
    time: datetime.datetime
    current: int
    desired: int

    @property
    def direction(self) -> int:
        return 1 if self.desired > self.current else -1


@dataclass(frozen=True)
class Round:
    time: datetime.datetime
    current: int
    recommendation: int  # what the metrics asked for (Decision.recommendation)


@dataclass(frozen=True)
class Tracker:
    """What the detector remembers between rounds (in memory: a restarted operator starts afresh)."""

    moves: tuple[Move, ...] = ()
    rounds: tuple[Round, ...] = ()  # every round within the window: the replay's input
    flapping: bool = False
    message: str = ""  # the message of the current episode (computed once: no status write per round)


@dataclass(frozen=True)
class Verdict:
    flapping: bool
    started: bool  # turned True this round: post the one Warning event
    changes: int
    message: str


def direction_changes(moves: tuple[Move, ...] | list[Move]) -> int:
    return sum(1 for a, b in itertools.pairwise(moves) if a.direction != b.direction)


def _path(moves: tuple[Move, ...]) -> str:
    counts = [moves[0].current] + [m.desired for m in moves]
    return " -> ".join(str(c) for c in counts)


def observe(tracker: Tracker, d: Decision, now: datetime.datetime, window_seconds: int) -> Tracker:
    cutoff = now - datetime.timedelta(seconds=window_seconds)
    moves = [m for m in tracker.moves if m.time > cutoff]
    if d.desired != d.current:
        moves.append(Move(now, d.current, d.desired))
    rounds = [r for r in tracker.rounds if r.time > cutoff] + [Round(now, d.current, d.recommendation)]
    return replace(tracker, moves=tuple(moves), rounds=tuple(rounds))


def assess(
    tracker: Tracker,
    spec: ScaledAppSpec,
    d: Decision,
    now: datetime.datetime,
    cfg: Settings,
    replay: Replay | None = None,
) -> tuple[Tracker, Verdict]:
    if not cfg.enabled:
        return Tracker(), Verdict(
            False, False, 0, "flapping detection is disabled (annotation " + ANNOTATION_CHANGES + ": 0)"
        )
    tracker = observe(tracker, d, now, cfg.window_seconds)
    changes = direction_changes(tracker.moves)
    if changes > cfg.changes:
        if tracker.flapping:
            return tracker, Verdict(True, False, changes, tracker.message)
        message = (
            f"the count changed direction {changes} times in the last {cfg.window_seconds}s "
            f"(more than {cfg.changes}): {_path(tracker.moves)}; {suggest(tracker, spec, cfg, replay)}"
        )
        tracker = replace(tracker, flapping=True, message=message)
        return tracker, Verdict(True, True, changes, message)
    tracker = replace(tracker, flapping=False, message="")
    stable = f"no more than {cfg.changes} direction changes in {cfg.window_seconds}s"
    return tracker, Verdict(False, False, changes, stable)


#: Direction changes of a tracker's recommendations replayed with another scale-down window
#: (``kopfscale.simulate.flaps.replay_changes``; the composition root gives it to the controller,
#: so the operator's loop does not import the simulator).
Replay = Callable[[Tracker, ScaledAppSpec, int], int]


def suggest(tracker: Tracker, spec: ScaledAppSpec, cfg: Settings, replay: Replay | None) -> str:
    """The shortest longer scale-down window whose replay would not have flapped."""
    if not tracker.rounds:
        return "no recorded recommendations to replay"
    if replay is None:
        return (
            "a longer behavior.scaleDown.stabilizationWindowSeconds would hold the count (kopfscale simulate)"
        )
    now_window = spec.behavior.scale_down.stabilization_window_seconds
    for window in CANDIDATE_WINDOWS:
        if window <= now_window:
            continue
        changes = replay(tracker, spec, window)
        if changes <= cfg.changes:
            return (
                f"replaying these {cfg.window_seconds}s of recommendations with "
                f"behavior.scaleDown.stabilizationWindowSeconds: {window} (now {now_window}) changes "
                f"direction {changes} time(s) (kopfscale simulate tries other settings on a trace)"
            )
    return (
        "no behavior.scaleDown.stabilizationWindowSeconds up to 3600 would have removed the flaps: "
        "the metric itself swings; consider a larger tolerance or a smoother query"
    )


def condition(verdict: Verdict, cfg: Settings, generation: int | None, now: datetime.datetime) -> Condition:
    if verdict.flapping:
        return make_condition(
            CONDITION, True, "DirectionChanges", verdict.message, observed_generation=generation, now=now
        )
    reason = "Stable" if cfg.enabled else "Disabled"
    message = verdict.message + (f" ({cfg.problem})" if cfg.problem else "")
    return make_condition(CONDITION, False, reason, message, observed_generation=generation, now=now)
