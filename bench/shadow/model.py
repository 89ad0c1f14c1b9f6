"""What a shadow run recorded, the decisions read out of it, and how they are paired. Pure.

A run records, per scenario, what each side showed over time (times are seconds since the run
started, as the driver saw them): the trace steps, every read of the metric endpoint (who read,
what it got), the peer's HPA status whenever it changed, the ScaledApp's status whenever it
changed, the workload's replicas and its Pods' readiness.

**Decisions.** The HPA writes its status only when something in it changes, and kopfscale keeps
``status.lastDecision`` while a round reaches the same decision again, so each side's visible
decisions are its changes; a decision stands until the next one (:attr:`KopfDecision.until`).

**Inputs.** A decision is a function of its inputs: the count it started from, the metric's value
(or its consecutive failures), and for ratio metrics on Pods the Pods' state (how many are ready,
have metrics, just started). Each peer decision is paired with the kopfscale decision that had the
**same inputs** and stood nearest in time (at most :data:`PAIR_HORIZON` away), not with whatever
kopfscale said at the same wall-clock time: the two loops poll at different phases, and one often
acts on a new value before the other has read it. A peer decision without such a partner is
*unpaired* (kopfscale never saw those inputs) and is counted, not compared.
"""

from __future__ import annotations

import datetime
import decimal
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.shadow.scenarios import PERIOD, Scenario

#: How far apart (seconds) two decisions on the same inputs may stand and still be compared:
#: two polling periods and some slack for a busy machine.
PAIR_HORIZON = 2 * PERIOD + 2.5
#: How far apart the same decision may come on both sides and count as one decision, shifted in
#: time: one polling period (the two loops' phase difference at most) and some slack.
SHIFT = PERIOD + 2.5
#: A Pod counts as just started for CPU (the HPA's initialization rule) this long after it became
#: Ready: metrics-server's 10 s resolution, its first sample's window and a scrape of slack.
FRESH_SECONDS = 25.0
#: The recorder looks every half second, so what it sees at ``t`` may already show what a decision
#: written just before ``t`` did (the Pods an HPA scale-up created): a decision's Pods are the
#: ones seen this long before it was seen.
LOOK = 0.5
CPU_PODS_NOTE = (
    "the driver lists the Pods every 0.5 s: ready = Running and Ready; metrics = metrics.k8s.io has a "
    f"sample; new = Ready for less than {FRESH_SECONDS:.0f} s (the HPA sets aside a CPU sample taken "
    "within one metric window of the Pod becoming ready)."
)


# --- the raw recording --------------------------------------------------------------------------------
@dataclass
class PodsState:
    """The scenario's Pods at one moment, as the driver listed them."""

    time: float
    pods: int
    ready: int
    with_metrics: int  # Pods metrics.k8s.io has a sample for
    fresh: int  # Ready for less than FRESH_SECONDS

    def key(self) -> tuple[int, ...]:
        """What of the Pods' state a CPU decision depends on: the HPA sets aside unready Pods,
        Pods without metrics and Pods within their first sample."""
        return (self.pods, self.ready, self.with_metrics, self.fresh)


@dataclass
class Recording:
    """Everything one scenario's run showed; JSON-serializable (:meth:`to_json`)."""

    scenario: str
    epoch: float = 0.0  # wall-clock seconds (time.time()) at offset 0
    steps: list[tuple[float, int]] = field(default_factory=list)  # (t, step index) when it took effect
    reads: list[tuple[float, str, float | None]] = field(default_factory=list)  # (t, reader, value|None)
    hpa: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # HPA status on change
    keda: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # ScaledObject status on change
    scaledapp: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # status on change
    workload: list[tuple[float, int, int]] = field(
        default_factory=list
    )  # (t, spec.replicas, status.replicas)
    pods: list[PodsState] = field(default_factory=list)  # on change
    by_hand: list[tuple[float, int]] = field(default_factory=list)  # (t, replicas) the driver set

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "epoch": self.epoch,
            "steps": self.steps,
            "reads": self.reads,
            "hpa": self.hpa,
            "keda": self.keda,
            "scaledapp": self.scaledapp,
            "workload": self.workload,
            "pods": [vars(p) for p in self.pods],
            "byHand": self.by_hand,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Recording:
        return cls(
            scenario=raw["scenario"],
            epoch=raw["epoch"],
            steps=[(t, i) for t, i in raw["steps"]],
            reads=[(t, r, v) for t, r, v in raw["reads"]],
            hpa=[(t, s) for t, s in raw["hpa"]],
            keda=[(t, s) for t, s in raw.get("keda", [])],
            scaledapp=[(t, s) for t, s in raw["scaledapp"]],
            workload=[(t, s, r) for t, s, r in raw["workload"]],
            pods=[PodsState(**p) for p in raw["pods"]],
            by_hand=[(t, r) for t, r in raw.get("byHand", [])],
        )

    # -- lookups ------------------------------------------------------------------------------------
    def pods_at(self, t: float) -> PodsState | None:
        """The Pods' state last seen at or before ``t``."""
        found = None
        for state in self.pods:
            if state.time > t:
                break
            found = state
        return found

    def pods_for(self, t: float, current: int) -> PodsState | None:
        """The Pods a decision seen at ``t``, made from ``current`` replicas, looked at: the latest
        state seen by then with ``current`` Pods (the workload had acted on that count; an HPA's
        scale-up creates Pods right after its decision), else the one seen just before ``t``."""
        for state in reversed(self.pods):
            if state.time > t:
                continue
            if t - state.time > 2 * PERIOD:
                break
            if state.pods == current:
                return state
        return self.pods_at(t - LOOK)

    def status_replicas_at(self, t: float) -> int | None:
        found = None
        for moment, _spec, status in self.workload:
            if moment > t:
                break
            found = status
        return found

    def failures_at(self, reader: str, t: float) -> int:
        """Consecutive failed reads by ``reader`` up to its last read at or before ``t``."""
        count = 0
        for moment, who, value in self.reads:
            if moment > t:
                break
            if who == reader:
                count = count + 1 if value is None else 0
        return count

    def peer_scale_events(self) -> list[tuple[float, int]]:
        """(t, change) of every change of the workload's count the driver did not make by hand."""
        events: list[tuple[float, int]] = []
        previous: int | None = None
        for moment, spec, _status in self.workload:
            if previous is not None and spec != previous:
                by_hand = any(abs(moment - t) < 3.0 and spec == r for t, r in self.by_hand)
                if not by_hand:
                    events.append((moment, spec - previous))
            previous = spec
        return events


# --- decisions ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PeerDecision:
    """One decision of the peer's HPA (or of KEDA answering for it), read from the HPA's status."""

    time: float
    current: int
    desired: int
    value: float | None  # the metric as the peer used it (None: failed, or not recognized)
    failed: bool = False  # the metric could not be read (KEDA may have answered with its fallback)
    failures: int = 0  # consecutive failed reads on the peer's side (KEDA counts every read)
    fallback: bool = False  # KEDA answered with fallback.replicas
    disabled: bool = False  # the HPA's "maintenance mode": the target at 0 with minReplicas >= 1
    limit: str | None = None  # ScalingLimited's reason when True
    stabilized: str | None = None  # AbleToScale's reason when a window held the count
    pods: PodsState | None = None
    until: float = math.inf  # when its next decision replaced it (every sync between repeated it)


@dataclass(frozen=True)
class KopfDecision:
    """One ``status.lastDecision`` of the Observe-mode ScaledApp, standing from ``time`` to ``until``."""

    time: float
    until: float
    current: int
    desired: int
    value: float | None
    failed: bool
    failures: int  # consecutive failed reads at its round
    fallback: bool  # the metric's fallback.replicas applied
    recommendation: int  # after activation: what the windows remember
    raw: int
    constraints: tuple[str, ...]  # constraintsApplied[].type, in the order the policy applied them
    stabilized: int  # the count after the stabilization windows, before rate limits and bounds
    reason: str
    window_release: float | None  # when the scale-down window stops holding above `recommendation`
    scale_events: tuple[tuple[float, int], ...] = ()  # status.history.scaleEvents (none in Observe)
    pods: PodsState | None = None
    pods_used: int | None = None  # lastDecision.metrics[].pods: the Pods its proposal multiplied, if said
    message: str = ""


_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(m|k|M|G|T|P|E|)$")
_SUFFIX = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def quantity(raw: Any) -> float | None:
    """A decimal Kubernetes quantity ("45", "45500m", "9k") as a number; None when it is not one."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    match = _QUANTITY.match(str(raw or ""))
    if not match:
        return None
    try:
        return float(decimal.Decimal(match.group(1)).scaleb(_SUFFIX[match.group(2)]))
    except decimal.InvalidOperation:
        return None


def _conditions(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}


def _reported(status: Mapping[str, Any]) -> tuple[str, float] | None:
    """The metric in the HPA's status: ("utilization", %), ("value", total) or ("average", per Pod)."""
    for metric in status.get("currentMetrics") or []:
        resource = metric.get("resource") or {}
        current = resource.get("current") or {}
        if current.get("averageUtilization") is not None:
            return "utilization", float(current["averageUtilization"])
        external = (metric.get("external") or {}).get("current") or {}
        if external.get("value") is not None:
            number = quantity(external["value"])
            return None if number is None else ("value", number)
        if external.get("averageValue") is not None:
            number = quantity(external["averageValue"])
            return None if number is None else ("average", number)
    return None


def _consistent(kind: str, reported: float, value: float, replicas: Sequence[int]) -> bool:
    """Whether ``value`` served to KEDA is what the HPA reports (in milli-units, as it computes)."""
    served = round(value * 1000)
    if kind == "value":
        return served == round(reported * 1000)
    # AverageValue: the HPA reports ceil(total / status.replicas) in milli-units.
    return any(r > 0 and math.ceil(served / r) == round(reported * 1000) for r in replicas)


def peer_decisions(scenario: Scenario, rec: Recording) -> list[PeerDecision]:
    """The peer's decisions, one per change of its HPA's status (repeats of a decision dropped)."""
    result: list[PeerDecision] = []
    last_signature: tuple[Any, ...] | None = None
    for moment, status in rec.hpa:
        if "desiredReplicas" not in status:
            continue
        current = int(status.get("currentReplicas", 0))  # omitted when 0
        conditions = _conditions(status)
        active = conditions.get("ScalingActive") or {}
        limited = conditions.get("ScalingLimited") or {}
        able = conditions.get("AbleToScale") or {}
        desired = int(status.get("desiredReplicas", current))
        decision = PeerDecision(
            time=moment,
            current=current,
            desired=desired,
            value=None,
            limit=str(limited.get("reason")) if limited.get("status") == "True" else None,
            stabilized=str(able.get("reason"))
            if str(able.get("reason", "")).endswith("Stabilized")
            else None,
            pods=rec.pods_for(moment, current),
        )
        if active.get("status") == "False":
            if active.get("reason") == "ScalingDisabled":
                decision = _replace(decision, desired=current, disabled=True)
            else:  # no usable metric: the HPA keeps the count (its status keeps a stale desired)
                failures = rec.failures_at("keda", moment) if scenario.peer == "keda" else 1
                decision = _replace(decision, desired=current, failed=True, failures=max(failures, 1))
        else:
            decision = _with_value(scenario, rec, decision, status)
        signature = (
            decision.current,
            decision.desired,
            decision.value,
            decision.failed,
            decision.fallback,
            decision.disabled,
            decision.limit,
            decision.stabilized,
            decision.pods.key() if decision.pods else None,
        )
        if signature != last_signature:
            result.append(decision)
            last_signature = signature
    return [_replace(d, until=result[i + 1].time) for i, d in enumerate(result[:-1])] + result[-1:]


def _replace(d: PeerDecision, **changes: Any) -> PeerDecision:
    return PeerDecision(**{**vars(d), **changes})


def _with_value(
    scenario: Scenario, rec: Recording, d: PeerDecision, status: Mapping[str, Any]
) -> PeerDecision:
    reported = _reported(status)
    if reported is None:
        return d
    kind, number = reported
    if kind == "utilization":
        return _replace(d, value=number)
    # External (KEDA): the HPA asked KEDA, which read the endpoint right then (no metrics cache by
    # default); find that read, newest first, within one sync period before the status write.
    replicas = [d.current] + [r for r in (rec.status_replicas_at(d.time),) if r is not None]
    reads = [(t, v) for t, who, v in rec.reads if who == "keda" and d.time - PERIOD - 1.0 <= t <= d.time]
    for read_at, value in reversed(reads):
        if value is not None and _consistent(kind, number, value, replicas):
            # The HPA looked at the Pods when it asked KEDA, not when its status was seen.
            return _replace(d, value=value, pods=rec.pods_for(read_at, d.current))
    if reads and reads[-1][1] is None:  # failing reads, yet a metric: KEDA's fallback answered
        return _replace(d, failed=True, fallback=True, failures=rec.failures_at("keda", d.time))
    return d


def _seconds(raw: Any, epoch: float) -> float | None:
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() - epoch


def window_release(history: Mapping[str, Any], above: int, window: float, epoch: float) -> float | None:
    """When (run seconds) the scale-down window stops holding a count above ``above``: the last time
    a higher recommendation was seen, plus the window. None when nothing higher is remembered."""
    latest: float | None = None
    for segment in history.get("recommendations") or []:
        if int(segment.get("replicas", 0)) <= above:
            continue
        seen = _seconds(segment.get("until") or segment.get("since"), epoch)
        if seen is not None and (latest is None or seen > latest):
            latest = seen
    return None if latest is None else latest + window


def kopf_decisions(scenario: Scenario, rec: Recording) -> list[KopfDecision]:
    """The ScaledApp's decisions, one per change of ``status.lastDecision`` (its time aside)."""
    found: list[KopfDecision] = []
    last: dict[str, Any] | None = None
    for moment, status in rec.scaledapp:
        decision = status.get("lastDecision")
        if not isinstance(decision, Mapping) or "currentReplicas" not in decision:
            continue
        comparable = {k: v for k, v in decision.items() if k != "time"}
        if comparable == last:
            continue
        last = comparable
        metrics = decision.get("metrics") or [{}]
        metric = metrics[0]
        failed = metric.get("error") is not None
        constraints = tuple(str(c.get("type")) for c in decision.get("constraintsApplied") or [])
        recommendation = int(decision.get("recommendation", decision["currentReplicas"]))
        stabilized = next(
            (
                int(c["replicas"])
                for c in decision.get("constraintsApplied") or []
                if c.get("type") == "Stabilization"
            ),
            None,
        )
        if stabilized is None:
            held = {"MissingMetricHold", "AllMetricsFailed", "Paused"} & set(constraints)
            stabilized = int(decision["currentReplicas"]) if held else recommendation
        history = status.get("history") or {}
        found.append(
            KopfDecision(
                time=moment,
                until=math.inf,
                current=int(decision["currentReplicas"]),
                desired=int(decision["finalDesiredReplicas"]),
                value=None if failed else _number(metric.get("value")),
                failed=failed,
                failures=rec.failures_at("kopfscale", moment) if scenario.metric == "http" else int(failed),
                fallback=any(m.get("fallback") for m in status.get("metrics") or []),
                recommendation=recommendation,
                raw=int(decision.get("rawDesiredReplicas", recommendation)),
                constraints=constraints,
                stabilized=stabilized,
                reason=str(decision.get("reason", "")),
                window_release=window_release(history, recommendation, scenario.down_window, rec.epoch),
                scale_events=tuple(
                    (t, int(e.get("change", 0)))
                    for e in history.get("scaleEvents") or []
                    if (t := _seconds(e.get("time"), rec.epoch)) is not None
                ),
                pods=rec.pods_for(moment, int(decision["currentReplicas"])),
                pods_used=_int(metric.get("pods")),
                message=str(decision.get("message", "")),
            )
        )
    return [
        KopfDecision(**{**vars(d), "until": found[i + 1].time if i + 1 < len(found) else math.inf})
        for i, d in enumerate(found)
    ]


def _int(raw: Any) -> int | None:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else None


def _number(raw: Any) -> float | None:
    return float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None


# --- pairing ------------------------------------------------------------------------------------------
def same_inputs(scenario: Scenario, p: PeerDecision, k: KopfDecision) -> bool:
    """The same count, the same metric (or the same number of failures) and, where the maths
    looks at Pods, the same Pods' state."""
    if p.current != k.current:
        return False
    if p.current == 0 and scenario.metric == "cpu":
        return True  # no Pods, nothing to read: both sides hold or restore the minimum
    if p.failed or k.failed:
        # When each side falls back is compared on its own (fallback_ticks); here, what each does
        # with a failed metric: hold, or scale to fallback.replicas within its windows and limits.
        return p.failed and k.failed and p.fallback == k.fallback
    if p.value is None or k.value is None:
        return False
    # CPU: the HPA reports (and computes with) whole percents; kopfscale keeps the fraction.
    same_value = abs(p.value - k.value) < (1.0 if scenario.metric == "cpu" else 1e-6)
    if not same_value:
        return False
    if scenario.metric == "cpu":
        return p.pods is not None and k.pods is not None and p.pods.key() == k.pods.key()
    if scenario.target_type == "Value" and not within_tolerance(p.value / scenario.target):
        # Outside the tolerance the HPA multiplies the ratio by the ready Pods (kopfscale says how
        # many it used in lastDecision.metrics[].pods; before it did, the Pods seen are taken).
        mine = k.pods_used if k.pods_used is not None else (k.pods.ready if k.pods else None)
        return p.pods is not None and p.pods.ready == mine
    return True


def within_tolerance(ratio: float, tolerance: float = 0.1) -> bool:
    """The HPA's default tolerance band (every scenario keeps the default)."""
    return 1 - tolerance <= ratio <= 1 + tolerance


def distance(t: float, d: PeerDecision | KopfDecision) -> float:
    """Seconds between ``t`` and the time ``d`` stood (0 when it stood at ``t``)."""
    if t < d.time:
        return d.time - t
    if t > d.until:
        return t - d.until
    return 0.0


def pair(scenario: Scenario, p: PeerDecision, kopf: Sequence[KopfDecision]) -> KopfDecision | None:
    """The kopfscale decision on the same inputs that stood nearest to ``p`` (within the horizon)."""
    candidates = [k for k in kopf if same_inputs(scenario, p, k) and distance(p.time, k) <= PAIR_HORIZON]
    return min(candidates, key=lambda k: (distance(p.time, k), abs(k.time - p.time)), default=None)


def pair_standing(scenario: Scenario, k: KopfDecision, peers: Sequence[PeerDecision]) -> PeerDecision | None:
    """The peer decision on the same inputs that stood nearest to kopfscale's ``k``: the HPA writes
    its status only when something changes, so a decision it kept is seen only as the one standing;
    a kopfscale decision made while the peer kept quiet is compared with it."""
    candidates = [p for p in peers if same_inputs(scenario, p, k) and distance(k.time, p) <= PAIR_HORIZON]
    return min(candidates, key=lambda p: (distance(k.time, p), abs(p.time - k.time)), default=None)


# --- fallback: after how many failed reads each side falls back -----------------------------------------
@dataclass(frozen=True)
class FallbackState:
    """Whether a side used ``fallback.replicas`` at its ``failures``-th failed read in a row.

    KEDA decides this per read of the trigger (its polling loop's and each HPA request's; its
    ScaledObject's ``status.health`` counts them and the ``Fallback`` condition says the outcome);
    kopfscale once per round (``status.metrics[].fallback``). An HPA decision shows the outcome
    only at the HPA's own syncs, so the onset is compared count by count here."""

    failures: int
    time: float
    fallback: bool


def failure_episodes(scenario: Scenario, rec: Recording) -> list[tuple[float, float]]:
    """(start, end) of every stretch in which the endpoint failed, as it took effect."""
    episodes: list[tuple[float, float]] = []
    for index, (start, step) in enumerate(rec.steps):
        if scenario.steps[step].value is None:
            end = rec.steps[index + 1][0] if index + 1 < len(rec.steps) else math.inf
            episodes.append((start, end + 2.0))
    return episodes


def keda_fallback_states(rec: Recording, start: float, end: float) -> list[FallbackState]:
    states: dict[int, FallbackState] = {}
    for moment, status in rec.keda:
        if not start <= moment < end:
            continue
        health = [h for h in (status.get("health") or {}).values() if isinstance(h, Mapping)]
        failing = [h for h in health if h.get("status") == "Failing"]
        if not failing:
            continue
        count = int(failing[0].get("numberOfFailures") or 0)
        fallback = _conditions(status).get("Fallback", {}).get("status") == "True"
        if count > 0 and count not in states:
            states[count] = FallbackState(count, moment, fallback)
    return [states[n] for n in sorted(states)]


def kopf_fallback_states(rec: Recording, start: float, end: float) -> list[FallbackState]:
    states: list[FallbackState] = []
    count = 0
    for moment, who, value in rec.reads:
        if who != "kopfscale":
            continue
        count = count + 1 if value is None else 0
        if value is not None or not start <= moment < end:
            continue
        metric = _round_metric(rec, moment, count)
        if metric is not None:
            states.append(FallbackState(count, moment, bool(metric.get("fallback"))))
    return states


def _round_metric(rec: Recording, read_at: float, count: int) -> Mapping[str, Any] | None:
    """The metric's status the round that made this read wrote (or left standing: a round that
    changes nothing writes nothing, e.g. once the failure count has reached its cap)."""
    standing: Mapping[str, Any] | None = None
    for moment, status in rec.scaledapp:
        metrics: list[Mapping[str, Any]] = status.get("metrics") or [{}]
        if moment <= read_at + 1.5:
            standing = metrics[0]
        if read_at - 0.01 <= moment <= read_at + 3.0 and metrics[0].get("consecutiveFailures") == count:
            return metrics[0]
        if moment > read_at + 3.0:
            break
    return standing
