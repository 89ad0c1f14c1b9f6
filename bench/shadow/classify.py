"""Why the two sides decided differently: each divergence gets exactly one class. Pure.

A divergence is a peer decision whose paired kopfscale decision (same inputs, see
:mod:`bench.shadow.model`) has another desired count. The rules below are tried in order; the
first that explains it wins, and what no rule explains is a **kopfscale bug**:

- **timing only**: the same inputs give the same decision, at another moment. The two loops poll
  at different phases, so one side's stabilization window ends, or its rate-limit period turns
  over, a round before the other's; and in mode Observe kopfscale makes no scale events, so its
  rate limits never count the ones the peer made. Each rule recomputes the peer's decision from
  the other side's numbers (the HPA's formulas, from kube-controller-manager's
  ``pkg/controller/podautoscaler``) rather than assuming it.
- **documented improvement**: kopfscale differs on purpose, and the row of docs/scaledapp.md's
  "Compared with the HPA and KEDA" table that says so, with the reason it is better for users,
  is named (:data:`ROWS`; a unit test checks that every named row exists).
- **kopfscale bug**: anything else. Known ones carry the name of the work that removes them
  (``known``); they are still bugs, and the shadow test fails on every one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from bench.shadow.model import (
    SHIFT,
    FallbackState,
    KopfDecision,
    PeerDecision,
    PodsState,
    same_inputs,
    within_tolerance,
)
from bench.shadow.scenarios import Behavior, Rules, Scenario

MATCH = "match"
TIMING = "timing only"
IMPROVEMENT = "documented improvement"
BUG = "kopfscale bug"
CATEGORIES = (TIMING, IMPROVEMENT, BUG)

#: Where the deliberate differences are listed (each improvement rule names a row of its table).
DOC = "docs/scaledapp.md#compared-with-the-hpa-and-keda"
#: The rows of that table the improvement rules name (the "Topic" column).
ROWS = ("Target at 0 with min ≥ 1", "Fallback value")

#: The work that removes the known bugs: issue #13's HPA-fidelity part (branch ``fidelity``).
FIDELITY = "HPA/KEDA fidelity (#13, branch fidelity)"


@dataclass(frozen=True)
class Verdict:
    category: str  # MATCH or one of CATEGORIES
    rule: str  # the rule's name
    why: str  # one line, with the numbers
    row: str | None = None  # improvements: the row of the comparison table
    known: str | None = None  # known bugs: what removes them


@dataclass(frozen=True)
class Context:
    """What the rules may look at besides the pair: the whole run of this scenario, and when the
    two decisions are compared (a peer decision's time, or a kopfscale decision's while the
    peer's stood)."""

    scenario: Scenario
    kopf: Sequence[KopfDecision]
    peer_events: Sequence[tuple[float, int]]  # (t, change) of the peer's scale events
    peers: Sequence[PeerDecision] = ()
    at: float = 0.0
    #: (at, peer, kopfscale, verdict) of the divergences explained so far, in time order
    explained: tuple[tuple[float, PeerDecision, KopfDecision, Verdict], ...] = ()
    pods: Sequence[PodsState] = ()  # the Pods' state as the driver listed it, on change


#: How far from a peer decision the Pods' state may change and still be what the peer saw: the
#: driver lists the Pods every 0.5 s and sees the HPA's status after the HPA acted on its own
#: informer's view; a second and some slack.
PODS_LAG = 1.5


Rule = Callable[[PeerDecision, KopfDecision, Context], Verdict | None]


# --- the HPA's normalization, for recomputing the peer -------------------------------------------------
def _changes(events: Sequence[tuple[float, int]], now: float, period: int) -> tuple[int, int]:
    """(added, removed) by events strictly after ``now - period`` and not after ``now``."""
    inside = [c for t, c in events if now - period < t <= now]
    return sum(c for c in inside if c > 0), sum(-c for c in inside if c < 0)


def rate_limit(
    rules: Rules, current: int, events: Sequence[tuple[float, int]], now: float, *, up: bool
) -> int:
    """``calculateScaleUpLimitWithScalingRules`` / ``calculateScaleDownLimitWithBehaviors``."""
    if rules.select == "Disabled":
        return current
    limits = []
    for policy in rules.policies:
        added, removed = _changes(events, now, policy.period)
        start = current - added + removed
        if up:
            limits.append(
                start + policy.value if policy.type == "Pods" else math.ceil(start * (1 + policy.value / 100))
            )
        else:
            limits.append(
                start - policy.value if policy.type == "Pods" else int(start * (1 - policy.value / 100))
            )
    biggest = rules.select == "Max"
    return (max if biggest == up else min)(limits)


def normalize(
    scenario: Scenario, current: int, desired: int, events: Sequence[tuple[float, int]], now: float
) -> int:
    """The HPA's rate limits and bounds after its stabilization: ``convertDesiredReplicasWithBehaviorRate``
    with ``behavior``, ``convertDesiredReplicasWithRules`` without (scale-up at most max(2 x current, 4))."""
    lo, hi = scenario.min_replicas, scenario.max_replicas
    behavior: Behavior | None = scenario.behavior
    if behavior is None:
        return max(lo, min(desired, hi, max(2 * current, 4)))
    if desired > current:
        limit = max(rate_limit(behavior.up, current, events, now, up=True), current)
        return min(desired, hi, limit)
    if desired < current:
        limit = min(rate_limit(behavior.down, current, events, now, up=False), current)
        return max(desired, lo, limit)
    return desired


# --- timing only --------------------------------------------------------------------------------------
def same_decision_shifted(p: PeerDecision, k: KopfDecision, ctx: Context) -> Verdict | None:
    """The two sides agree within one polling period (+ slack) after the comparison, on the same
    inputs: the peer makes kopfscale's decision, or kopfscale the peer's. One of them changed its
    mind a round earlier (kopfscale reads a new value first, so its windows start and end a round
    earlier). When neither ever follows, it is not timing."""
    peer_follows = [
        o.time - ctx.at
        for o in ctx.peers
        if o.desired == k.desired and same_inputs(ctx.scenario, o, k) and 0 <= o.time - ctx.at <= SHIFT
    ]
    kopf_follows = [
        o.time - ctx.at
        for o in ctx.kopf
        if o.desired == p.desired and same_inputs(ctx.scenario, p, o) and 0 <= o.time - ctx.at <= SHIFT
    ]
    if peer_follows:
        return Verdict(
            TIMING,
            "same decision, shifted",
            f"on the same inputs the peer decided {k.desired} too, {min(peer_follows):.1f} s later",
        )
    if kopf_follows:
        return Verdict(
            TIMING,
            "same decision, shifted",
            f"on the same inputs kopfscale decided {p.desired} too, {min(kopf_follows):.1f} s later",
        )
    return None


def pods_changing(p: PeerDecision, k: KopfDecision, ctx: Context) -> Verdict | None:
    """A ``Value`` metric outside the tolerance while the Pods' readiness changes within a moment
    of the peer's decision (the driver lists the Pods every 0.5 s; the HPA counts them from its
    own informer at its sync): with the ready count listed just before or after, the HPA's formula
    gives the peer's decision, and with the count kopfscale used, kopfscale's."""
    scenario = ctx.scenario
    if scenario.target_type != "Value" or p.value is None or p.pods is None or p.current == 0:
        return None
    ratio = p.value / scenario.target
    if within_tolerance(ratio):
        return None

    def decided(ready: int) -> int:
        return normalize(scenario, p.current, math.ceil(ratio * ready), ctx.peer_events, p.time)

    used = k.pods_used if k.pods_used is not None else p.pods.ready
    if decided(used) != k.desired:
        return None
    near = [
        s
        for s in ctx.pods
        if abs(s.time - p.time) <= PODS_LAG and s.ready != used and decided(s.ready) == p.desired
    ]
    if not near:
        return None
    seen = min(near, key=lambda s: abs(s.time - p.time))
    return Verdict(
        TIMING,
        "Pods changing",
        f"{seen.ready} Pods ready {seen.time - p.time:+.1f} s from the peer's decision, {used} when "
        f"kopfscale counted: x {ratio:.2f} gives {p.desired} and {k.desired}",
    )


def remembered_by_the_window(p: PeerDecision, k: KopfDecision, ctx: Context) -> Verdict | None:
    """An explained divergence earlier within one scale-down window: each side's window still
    holds what that side decided then (kopfscale what it recommended, the peer what it kept), so
    the difference is that one's, remembered; it ends with the window."""
    if "Stabilization" not in k.constraints:
        return None
    horizon = ctx.scenario.down_window + SHIFT
    for at, then_peer, then_kopf, verdict in reversed(ctx.explained):
        # Remembered from the last round that recommended it: while that decision stood.
        if ctx.at - min(then_kopf.until, ctx.at) > horizon:
            continue
        if then_kopf.recommendation == k.stabilized and then_peer.desired == p.desired:
            return Verdict(
                verdict.category,
                "remembered by the window",
                f"kopfscale's window still holds the {k.stabilized} it recommended at t={at:.0f} s, the "
                f"peer's the {p.desired} it kept then ({verdict.rule})",
                row=verdict.row,
            )
    return None


def window_phase(p: PeerDecision, k: KopfDecision, ctx: Context) -> Verdict | None:
    """kopfscale's scale-down window still held a higher count and lets go within one polling
    period (+ slack) of the peer's decision: both windows are as long, they started on each side's
    first round with the lower value."""
    if "Stabilization" not in k.constraints or k.window_release is None:
        return None
    unheld = normalize(ctx.scenario, p.current, k.recommendation, ctx.peer_events, p.time)
    gap = k.window_release - p.time
    if unheld == p.desired and abs(gap) <= SHIFT:
        return Verdict(
            TIMING,
            "stabilization window phase",
            f"kopfscale's {ctx.scenario.down_window} s window held {k.stabilized} and lets go "
            f"{abs(gap):.1f} s {'after' if gap > 0 else 'before'} the peer's; without it: {unheld}",
        )
    return None


def scale_event_history(p: PeerDecision, k: KopfDecision, ctx: Context) -> Verdict | None:
    """The rate limits count the scale events of their period: the peer's own (it scaled), and
    none on kopfscale's side (mode Observe never scales). Recomputed with each side's events, the
    HPA's limits give both decisions."""
    if ctx.scenario.behavior is None:  # the legacy path keeps no events
        return None
    limited = "Policy" in k.constraints or p.limit in ("ScaleUpLimit", "ScaleDownLimit")
    if not limited:
        return None
    peer = normalize(ctx.scenario, p.current, k.stabilized, ctx.peer_events, p.time)
    kopf = normalize(ctx.scenario, k.current, k.stabilized, k.scale_events, k.time)
    if peer == p.desired and kopf == k.desired:
        recent = [c for t, c in ctx.peer_events if p.time - 15 < t <= p.time]
        return Verdict(
            TIMING,
            "scale events of the period",
            f"with the peer's scale events {recent} the limit gives {peer}, with kopfscale's none {kopf}",
        )
    return None


# --- documented improvements --------------------------------------------------------------------------
def fallback_value(p: PeerDecision, k: KopfDecision, ctx: Context) -> Verdict | None:
    """KEDA's fallback is a synthetic metric (``fallback.replicas x target``) that goes through the
    HPA's formula: within the tolerance of the Pods there are, the HPA keeps them. kopfscale's
    metric in fallback recommends exactly ``fallback.replicas``."""
    fallback = ctx.scenario.fallback
    if fallback is None or not (p.failed and p.fallback and k.fallback) or p.current == 0:
        return None
    if (
        p.desired == p.current
        and within_tolerance(fallback[1] / p.current)
        and k.recommendation == fallback[1]
    ):
        return Verdict(
            IMPROVEMENT,
            "fallback value",
            f"fallback.replicas {fallback[1]} is within the tolerance of {p.current} Pods: the HPA keeps "
            f"{p.current}, kopfscale goes to {fallback[1]}",
            row=ROWS[1],
        )
    return None


def target_at_zero(p: PeerDecision, k: KopfDecision, ctx: Context) -> Verdict | None:
    """Someone scaled the workload to 0 while minReplicas >= 1: the HPA switches itself off
    ("maintenance mode", ScalingActive=False ScalingDisabled) and leaves it at 0; kopfscale
    restores minReplicas, because its floor is a promise."""
    if p.disabled and p.current == 0 and k.desired == ctx.scenario.min_replicas >= 1:
        return Verdict(
            IMPROVEMENT,
            "target at zero",
            f"the HPA keeps 0 (ScalingDisabled); kopfscale wants minReplicas {k.desired}",
            row=ROWS[0],
        )
    return None


# --- known kopfscale bugs -----------------------------------------------------------------------------
def legacy_scale_up_limit(p: PeerDecision, k: KopfDecision, ctx: Context) -> Verdict | None:
    """An HPA created without ``behavior`` limits a scale-up to max(2 x current, 4) per sync
    (``convertDesiredReplicasWithRules``); kopfscale applies the default policies instead
    (Percent 100 / Pods 4 per 15 s: max(2 x current, current + 4))."""
    legacy = max(2 * p.current, 4)
    if (
        ctx.scenario.behavior is None
        and p.limit == "ScaleUpLimit"
        and p.desired == min(legacy, ctx.scenario.max_replicas)
        and k.desired > p.desired
    ):
        return Verdict(
            BUG,
            "legacy scale-up limit",
            f"the HPA without behavior allows max(2 x {p.current}, 4) = {legacy}; kopfscale {k.desired}",
            known=FIDELITY,
        )
    return None


def legacy_stabilization(p: PeerDecision, k: KopfDecision, ctx: Context) -> Verdict | None:
    """An HPA created without ``behavior`` stabilizes with the **highest** recommendation of the
    last 5 minutes in both directions (``stabilizeRecommendation``): a high one still in the
    window pulls a scale-up even when the metric now asks for no more than ``current``.
    kopfscale's default windows bring ``current`` between the up window's lowest and the down
    window's highest recommendation, so it does not scale up."""
    if (
        ctx.scenario.behavior is None
        and p.desired > p.current
        and k.recommendation <= k.current
        and k.desired <= k.current
    ):
        return Verdict(
            BUG,
            "legacy stabilization",
            f"the metric asks for {k.recommendation}; the HPA without behavior still scales up to "
            f"{p.desired} on a higher recommendation of its last 300 s, kopfscale holds {k.desired}",
            known=FIDELITY,
        )
    return None


def ready_pods(p: PeerDecision, k: KopfDecision, ctx: Context) -> Verdict | None:
    """A ``Value`` metric: the HPA multiplies the usage ratio by the **ready** Pods
    (``getUsageRatioReplicaCount``), kopfscale by ``spec.replicas``."""
    used = k.pods_used if k.pods_used is not None else k.current
    if ctx.scenario.target_type == "Value" and p.pods is not None and p.pods.ready < p.current == used:
        return Verdict(
            BUG,
            "ready Pods of a Value metric",
            f"{p.pods.ready} of {p.current} Pods ready: the HPA multiplies by {p.pods.ready}, "
            f"kopfscale by {k.current}",
            known=FIDELITY,
        )
    return None


def cpu_pods(p: PeerDecision, k: KopfDecision, ctx: Context) -> Verdict | None:
    """CPU: the HPA sets aside Pods not ready, Pods without metrics and Pods within their first
    sample after becoming ready, and counts them at 0 % on a scale-up, 100 % on a scale-down
    (``GetResourceReplicas``); kopfscale averages over the Pods that have metrics."""
    pods = p.pods
    if ctx.scenario.metric != "cpu" or pods is None:
        return None
    unready, without, fresh = pods.pods - pods.ready, pods.pods - pods.with_metrics, pods.fresh
    if unready or without or fresh:
        return Verdict(
            BUG,
            "CPU: unready, missing or new Pods",
            f"{pods.pods} Pods: {unready} unready, {without} without metrics, {fresh} just started",
            known=FIDELITY,
        )
    return None


#: Tried in this order; the first that explains a divergence classifies it.
RULES: tuple[Rule, ...] = (
    same_decision_shifted,
    pods_changing,
    window_phase,
    remembered_by_the_window,
    scale_event_history,
    target_at_zero,
    fallback_value,
    legacy_scale_up_limit,
    legacy_stabilization,
    ready_pods,
    cpu_pods,
)


def classify(p: PeerDecision, k: KopfDecision, ctx: Context, at: float | None = None) -> Verdict:
    """The verdict on a pair compared ``at`` (default: the peer decision's time)."""
    ctx = replace(ctx, at=p.time if at is None else at)
    if p.desired == k.desired:
        return Verdict(MATCH, "match", f"{p.current} -> {p.desired} on both sides")
    for rule in RULES:
        verdict = rule(p, k, ctx)
        if verdict is not None:
            return verdict
    return Verdict(
        BUG,
        "unexplained",
        f"same inputs, peer {p.current} -> {p.desired}, kopfscale {k.current} -> {k.desired} "
        f"({k.message or k.reason}); no rule explains it",
    )


def classify_fallback(scenario: Scenario, keda: FallbackState, kopf: FallbackState) -> Verdict:
    """At the same count of failed reads in a row, do both use fallback.replicas?"""
    if keda.fallback == kopf.fallback:
        state = "fallback" if kopf.fallback else "no fallback"
        return Verdict(MATCH, "match", f"failure {kopf.failures}: {state} on both sides")
    threshold = scenario.fallback[0] if scenario.fallback else 0
    if kopf.fallback and kopf.failures == threshold:
        return Verdict(
            BUG,
            "fallback at failureThreshold+1",
            f"failure {kopf.failures} of failureThreshold {threshold}: KEDA falls back only when the "
            f"count exceeds it (pkg/fallback: NumberOfFailures > FailureThreshold), kopfscale already did",
            known=FIDELITY,
        )
    return Verdict(
        BUG,
        "unexplained",
        f"failure {kopf.failures}: KEDA {'in' if keda.fallback else 'not in'} fallback, kopfscale "
        f"{'in' if kopf.fallback else 'not in'}; no rule explains it",
    )


def describe_rules() -> list[tuple[str, str, str]]:
    """(category, name, what it says) for every rule, for the report."""
    names: dict[Rule, tuple[str, str]] = {
        same_decision_shifted: (TIMING, "same decision, shifted"),
        pods_changing: (TIMING, "Pods changing"),
        window_phase: (TIMING, "stabilization window phase"),
        remembered_by_the_window: (f"{TIMING} / {IMPROVEMENT}", "remembered by the window"),
        scale_event_history: (TIMING, "scale events of the period"),
        target_at_zero: (IMPROVEMENT, "target at zero"),
        fallback_value: (IMPROVEMENT, "fallback value"),
        legacy_scale_up_limit: (BUG, "legacy scale-up limit (known)"),
        legacy_stabilization: (BUG, "legacy stabilization (known)"),
        ready_pods: (BUG, "ready Pods of a Value metric (known)"),
        cpu_pods: (BUG, "CPU: unready, missing or new Pods (known)"),
    }
    result = []
    for rule in RULES:
        category, name = names[rule]
        result.append((category, name, " ".join((rule.__doc__ or "").split())))
    result.append(
        (
            BUG,
            "fallback at failureThreshold+1 (known)",
            "Compared per count of failed reads in a row: KEDA uses fallback.replicas once the count "
            "exceeds failureThreshold (pkg/fallback/fallback.go), kopfscale once it reaches it.",
        )
    )
    return result
