"""One scenario's recording turned into compared ticks and counts. Pure."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from bench.shadow import classify as c
from bench.shadow.model import (
    FallbackState,
    KopfDecision,
    PeerDecision,
    Recording,
    failure_episodes,
    keda_fallback_states,
    kopf_decisions,
    kopf_fallback_states,
    pair,
    pair_standing,
    peer_decisions,
)
from bench.shadow.scenarios import Scenario


@dataclass(frozen=True)
class Tick:
    """A peer decision and the kopfscale decision on the same inputs (None: unpaired), compared
    ``at`` the peer's decision, or (``origin`` "kopfscale") a kopfscale decision made while the
    peer's decision on the same inputs stood unchanged (the HPA writes no status then)."""

    peer: PeerDecision
    kopf: KopfDecision | None
    verdict: c.Verdict | None
    origin: str = "peer"
    at: float = 0.0


@dataclass(frozen=True)
class FallbackTick:
    episode: int
    keda: FallbackState
    kopf: FallbackState
    verdict: c.Verdict


@dataclass
class Result:
    scenario: Scenario
    ticks: list[Tick] = field(default_factory=list)
    fallback: list[FallbackTick] = field(default_factory=list)
    kopf: list[KopfDecision] = field(default_factory=list)

    @property
    def divergences(self) -> list[Tick]:
        return [t for t in self.ticks if t.verdict is not None and t.verdict.category != c.MATCH]

    @property
    def bugs(self) -> list[c.Verdict]:
        """Every kopfscale bug, decisions and fallback onsets alike."""
        found = [t.verdict for t in self.divergences if t.verdict and t.verdict.category == c.BUG]
        return found + [t.verdict for t in self.fallback if t.verdict.category == c.BUG]

    def counts(self) -> dict[str, int]:
        """Peer decisions, how many were paired, the kopfscale changes compared with a standing
        peer decision, the verdicts of all; fallback onsets compared and theirs."""
        verdicts = Counter(t.verdict.category for t in self.ticks if t.verdict is not None)
        onsets = Counter(t.verdict.category for t in self.fallback)
        peer = [t for t in self.ticks if t.origin == "peer"]
        return {
            "peer decisions": len(peer),
            "paired": sum(t.kopf is not None for t in peer),
            "kopfscale changes": sum(t.origin == "kopfscale" for t in self.ticks),
            c.MATCH: verdicts[c.MATCH],
            c.TIMING: verdicts[c.TIMING],
            c.IMPROVEMENT: verdicts[c.IMPROVEMENT],
            c.BUG: verdicts[c.BUG],
            "unpaired": sum(t.kopf is None for t in peer),
            "fallback counts compared": len(self.fallback),
            "fallback match": onsets[c.MATCH],
            "fallback bug": onsets[c.BUG],
        }

    def to_json(self) -> dict[str, Any]:
        def verdict(v: c.Verdict | None) -> dict[str, Any] | None:
            return None if v is None else {k: x for k, x in vars(v).items() if x is not None}

        document: dict[str, Any] = finite(
            {
                "scenario": self.scenario.name,
                "counts": self.counts(),
                "ticks": [
                    {
                        "peer": vars(t.peer) | {"pods": vars(t.peer.pods) if t.peer.pods else None},
                        "kopfscale": None
                        if t.kopf is None
                        else vars(t.kopf) | {"pods": vars(t.kopf.pods) if t.kopf.pods else None},
                        "verdict": verdict(t.verdict),
                        "origin": t.origin,
                        "at": t.at,
                    }
                    for t in self.ticks
                ],
                "fallback": [
                    {
                        "episode": t.episode,
                        "keda": vars(t.keda),
                        "kopfscale": vars(t.kopf),
                        "verdict": verdict(t.verdict),
                    }
                    for t in self.fallback
                ],
            }
        )
        return document


def finite(x: Any) -> Any:
    """JSON has no infinity: a decision still standing at the end stands ``until`` null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [finite(v) for v in x]
    return x


def analyse(scenario: Scenario, rec: Recording) -> Result:
    peers = peer_decisions(scenario, rec)
    kopf = kopf_decisions(scenario, rec)
    ctx = c.Context(scenario, kopf, rec.peer_scale_events(), peers, pods=rec.pods)
    result = Result(scenario, kopf=kopf)
    pairs: list[tuple[float, str, PeerDecision, KopfDecision | None]] = []
    for p in peers:
        k = pair(scenario, p, kopf)
        pairs.append((p.time, "peer", p, k))
    compared = {(p.time, k.time) for _, _, p, k in pairs if k is not None}
    for k in kopf:
        standing = pair_standing(scenario, k, peers)
        if standing is not None and (standing.time, k.time) not in compared and k.time > standing.time:
            pairs.append((k.time, "kopfscale", standing, k))
    # In time order: a rule may look back at the divergences explained before (what the windows
    # still remember of them).
    for at, origin, p, maybe_k in sorted(pairs, key=lambda item: item[0]):
        if maybe_k is None:
            result.ticks.append(Tick(p, None, None, origin, at))
            continue
        verdict = c.classify(p, maybe_k, ctx, at=at)
        result.ticks.append(Tick(p, maybe_k, verdict, origin, at))
        if verdict.category in (c.TIMING, c.IMPROVEMENT):
            ctx = replace(ctx, explained=(*ctx.explained, (at, p, maybe_k, verdict)))
    if scenario.peer == "keda" and scenario.fallback is not None:
        for episode, (start, end) in enumerate(failure_episodes(scenario, rec)):
            keda = {s.failures: s for s in keda_fallback_states(rec, start, end)}
            for mine in kopf_fallback_states(rec, start, end):
                theirs = keda.get(mine.failures)
                if theirs is not None:
                    verdict = c.classify_fallback(scenario, theirs, mine)
                    result.fallback.append(FallbackTick(episode, theirs, mine, verdict))
    return result
