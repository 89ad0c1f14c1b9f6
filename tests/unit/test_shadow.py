"""The shadow's pure parts (bench/shadow): reading decisions out of what a run recorded, pairing
them by inputs, and classifying divergences. A divergence no rule explains must come out as a
kopfscale bug; the explained ones must name their reason (and, for improvements, a row of the
docs' comparison table that exists)."""

from __future__ import annotations

import datetime
import json
import re
import urllib.error
import urllib.request
from dataclasses import replace
from typing import Any

import pytest
from bench.shadow import classify as c
from bench.shadow import scenarios
from bench.shadow.analyse import analyse
from bench.shadow.live import Endpoint
from bench.shadow.model import (
    FallbackState,
    KopfDecision,
    PeerDecision,
    PodsState,
    Recording,
    kopf_decisions,
    pair,
    peer_decisions,
    quantity,
    window_release,
)

from kopfscale_devcluster.binaries import REPO_ROOT

CPU = scenarios.full()[0]
AVERAGE = scenarios.full()[1]
VALUE = scenarios.full()[2]
EPOCH = 1_800_000_000.0


def peer(current: int, desired: int, value: float | None = 250, t: float = 20.0, **kw: Any) -> PeerDecision:
    return PeerDecision(time=t, current=current, desired=desired, value=value, **kw)


def kopf(current: int, desired: int, value: float | None = 250, t: float = 19.0, **kw: Any) -> KopfDecision:
    fields: dict[str, Any] = {
        "time": t,
        "until": t + 10,
        "current": current,
        "desired": desired,
        "value": value,
        "failed": False,
        "failures": 0,
        "fallback": False,
        "recommendation": desired,
        "raw": desired,
        "constraints": (),
        "stabilized": desired,
        "reason": "DesiredWithinRange",
        "window_release": None,
    }
    fields.update(kw)
    return KopfDecision(**fields)


def context(
    scenario: scenarios.Scenario, *decisions: KopfDecision, events: Any = (), peers: Any = ()
) -> c.Context:
    return c.Context(scenario, list(decisions), list(events), list(peers))


def settled(n: int) -> PodsState:
    return PodsState(time=0.0, pods=n, ready=n, with_metrics=n, fresh=0)


# --- classification ------------------------------------------------------------------------------------
def test_a_divergence_no_rule_explains_is_a_kopfscale_bug() -> None:
    # The same inputs (2 replicas, value 45 against AverageValue 10, nothing failing) and the HPA
    # scales to 5 while kopfscale says 7: nothing about timing, windows or limits explains it.
    p = peer(2, 5, value=45)
    k = kopf(2, 7, value=45, recommendation=7, raw=7, stabilized=7)
    verdict = c.classify(p, k, context(AVERAGE, k))
    assert verdict.category == c.BUG
    assert verdict.known is None
    assert "no rule explains it" in verdict.why


def test_the_same_decision_a_round_apart_is_timing_only() -> None:
    # On the same inputs kopfscale went 5 -> 4 at t=17, the peer at t=22: compared at t=20, each
    # side had the other's decision within a round.
    earlier = kopf(5, 5, value=52, t=10.0, until=17.0)
    later = kopf(5, 4, value=52, t=17.0, until=30.0)
    p = peer(5, 5, value=52, t=12.0, until=22.0)
    follows = peer(5, 4, value=52, t=22.0)
    ctx = context(AVERAGE, earlier, later, peers=[p, follows])
    assert c.classify(p, later, ctx, at=20.0).category == c.TIMING
    # The peer never follows: kopfscale having held 5 itself a moment ago explains nothing.
    assert c.classify(p, later, context(AVERAGE, earlier, later, peers=[p]), at=20.0).category == c.BUG
    # Ten seconds apart is more than a round: not timing.
    far = replace(follows, time=32.0)
    assert c.classify(p, later, context(AVERAGE, earlier, later, peers=[p, far]), at=20.0).category == c.BUG


def test_a_window_letting_go_a_round_later_is_timing_only() -> None:
    # Both windows hold 5 after the value fell to 18 (-> 2); the peer's let go at t=70, kopfscale's
    # (it saw the drop 3 s later) lets go at t=73.
    k = kopf(
        5,
        5,
        value=18,
        t=60.0,
        recommendation=2,
        raw=2,
        stabilized=5,
        constraints=("Stabilization",),
        window_release=73.0,
    )
    p = peer(5, 2, value=18, t=70.0)
    assert c.classify(p, k, context(AVERAGE, k)).rule == "stabilization window phase"
    # A window held 40 s too long is not a phase difference.
    late = replace(k, window_release=110.0)
    assert c.classify(p, late, context(AVERAGE, late)).category == c.BUG


def test_rate_limits_counting_the_peers_scale_events_is_timing_only() -> None:
    # The HPA scaled 1 -> 5 five seconds ago: its period starts at 1, so Percent 100 allows 2 and
    # Pods 4 allows 5: it stays at 5. kopfscale in Observe mode made no scale event: from 5 it
    # would allow 10 (Percent 100), the max.
    p = peer(5, 5, value=120, t=30.0, limit="ScaleUpLimit")
    k = kopf(5, 10, value=120, t=29.0, recommendation=12, raw=12, stabilized=12, constraints=("Policy",))
    verdict = c.classify(p, k, context(AVERAGE, k, events=[(25.0, 4)]))
    assert verdict.category == c.TIMING
    assert verdict.rule == "scale events of the period"
    # Without the peer's event there is nothing to explain a 5: a bug.
    assert c.classify(p, k, context(AVERAGE, k)).category == c.BUG


def test_the_legacy_scale_up_limit_is_a_known_bug_until_fidelity() -> None:
    # An HPA without behavior: 1 -> max(2, 4) = 4; kopfscale's default policies allow 1 + 4 = 5.
    p = peer(1, 4, limit="ScaleUpLimit", pods=settled(1))
    k = kopf(1, 5, recommendation=5, raw=5, stabilized=5, constraints=("Policy",), pods=settled(1))
    verdict = c.classify(p, k, context(CPU, k))
    assert verdict.category == c.BUG
    assert verdict.rule == "legacy scale-up limit"
    assert verdict.known == c.FIDELITY


def test_a_scale_up_pulled_by_the_legacy_window_is_a_known_bug() -> None:
    # Without behavior the HPA takes the highest recommendation of its last 300 s: at 4 replicas
    # and 30 % (ratio 0.6 -> 3) an earlier 40 pulls it to maxReplicas; kopfscale's window holds 4.
    p = peer(4, 8, value=30, limit="TooManyReplicas")
    k = kopf(4, 4, value=30, recommendation=3, raw=3, stabilized=4, constraints=("Stabilization",))
    verdict = c.classify(p, k, context(CPU, k))
    assert (verdict.rule, verdict.known) == ("legacy stabilization", c.FIDELITY)
    # With behavior (the KEDA pairs) the same numbers are not explained.
    assert c.classify(p, k, context(AVERAGE, k)).rule == "unexplained"


def test_ready_pods_and_cpu_pods_are_named_known_bugs() -> None:
    one_unready = PodsState(time=0, pods=2, ready=1, with_metrics=2, fresh=0)
    p = peer(2, 2, value=30, pods=one_unready)
    k = kopf(2, 3, value=30, pods=one_unready)
    assert c.classify(p, k, context(VALUE, k)).rule == "ready Pods of a Value metric"
    # Once kopfscale says it multiplied the ready Pod too, a divergence is not that one.
    counted = replace(k, pods_used=1)
    assert c.classify(p, counted, context(VALUE, counted)).rule == "unexplained"
    new_pods = PodsState(time=0, pods=5, ready=5, with_metrics=1, fresh=4)
    p = peer(4, 5, pods=new_pods)
    k = kopf(4, 8, pods=new_pods)
    verdict = c.classify(p, k, context(CPU, k))
    assert (verdict.category, verdict.known) == (c.BUG, c.FIDELITY)
    assert "4 without metrics" in verdict.why


def test_keda_keeping_the_pods_within_the_tolerance_of_its_fallback_is_a_documented_improvement() -> None:
    # fallback.replicas 6 and 6 Pods... with 10 Pods and fallback 9: 9 / 10 = 0.9 is within the
    # tolerance, so KEDA's synthetic metric keeps 10; kopfscale's fallback recommends exactly 9.
    scenario = replace(AVERAGE, fallback=(2, 9))
    p = peer(10, 10, value=None, failed=True, fallback=True)
    k = kopf(10, 9, value=None, failed=True, fallback=True, recommendation=9, raw=9, stabilized=9)
    verdict = c.classify(p, k, context(scenario, k))
    assert (verdict.category, verdict.row) == (c.IMPROVEMENT, "Fallback value")


def test_what_a_window_remembers_of_an_explained_divergence_is_that_divergence() -> None:
    # At t=250 KEDA kept 10 Pods on a fallback of 9 (documented), kopfscale recommended 9. At
    # t=262 the metric reads 61 (-> 7): kopfscale's 15 s window holds the 9, the HPA's the 10.
    scenario = replace(AVERAGE, fallback=(2, 9))
    then_p = peer(10, 10, value=None, failed=True, fallback=True, t=250.0)
    then_k = kopf(
        10,
        9,
        value=None,
        failed=True,
        fallback=True,
        recommendation=9,
        raw=9,
        stabilized=9,
        t=249.0,
        until=255.0,
    )
    explained = c.classify(then_p, then_k, context(scenario, then_k))
    p = peer(10, 10, value=61, t=262.0)
    k = kopf(10, 9, value=61, t=261.0, recommendation=7, raw=7, stabilized=9, constraints=("Stabilization",))
    ctx = replace(context(scenario, then_k, k), explained=((250.0, then_p, then_k, explained),))
    verdict = c.classify(p, k, ctx)
    assert (verdict.category, verdict.rule, verdict.row) == (
        c.IMPROVEMENT,
        "remembered by the window",
        "Fallback value",
    )
    # Longer ago than a window: nothing is remembered, and nothing explains it.
    gone = replace(then_k, time=200.0, until=230.0)
    old = replace(ctx, explained=((200.0, then_p, gone, explained),))
    assert c.classify(p, k, old).category == c.BUG


def test_a_workload_scaled_to_zero_is_a_documented_improvement() -> None:
    p = peer(0, 0, value=None, disabled=True)
    k = kopf(0, 1, value=None, failed=True, reason="TooFewReplicas")
    verdict = c.classify(p, k, context(CPU, k))
    assert verdict.category == c.IMPROVEMENT
    assert verdict.row in c.ROWS


def comparison_rows() -> set[str]:
    text = (REPO_ROOT / "docs/scaledapp.md").read_text()
    section = text.split("## Compared with the HPA and KEDA", 1)[1].split("\n## ", 1)[0]
    return {m.group(1).strip() for m in re.finditer(r"^\| ([^|]+) \|", section, re.M)} - {"Topic", "---"}


def test_every_improvement_names_a_row_of_the_comparison_table() -> None:
    rows = comparison_rows()
    assert "Polling" in rows  # the table was found
    assert set(c.ROWS) <= rows, set(c.ROWS) - rows


def test_fallback_onset_at_the_threshold_is_the_known_bug_and_other_differences_are_not() -> None:
    threshold = AVERAGE.fallback[0] if AVERAGE.fallback else 0
    keda = FallbackState(threshold, 10.0, fallback=False)
    early = FallbackState(threshold, 11.0, fallback=True)
    assert c.classify_fallback(AVERAGE, keda, early).known == c.FIDELITY
    assert c.classify_fallback(AVERAGE, keda, replace(early, fallback=False)).category == c.MATCH
    late_keda = FallbackState(threshold + 1, 15.0, fallback=True)
    late_kopf = FallbackState(threshold + 1, 16.0, fallback=False)
    verdict = c.classify_fallback(AVERAGE, late_keda, late_kopf)
    assert (verdict.category, verdict.known) == (c.BUG, None)


@pytest.mark.parametrize(
    ("current", "desired", "events", "expected"),
    [
        (1, 10, [], 2 * 1 + 3),  # Pods 4 beats Percent 100 from 1: 5
        (6, 20, [], 10),  # Percent 100 from 6 = 12, then maxReplicas 10
        (5, 12, [(25.0, 4)], 5),  # the period started at 1: max(2, 5)
        (5, 12, [(10.0, 4)], 10),  # that event is older than the 15 s period
        (8, 2, [], 2),  # Percent 100 down allows 0, minReplicas 1, the desired 2
    ],
)
def test_the_hpa_normalization_the_rules_recompute(
    current: int, desired: int, events: list[tuple[float, int]], expected: int
) -> None:
    assert c.normalize(AVERAGE, current, desired, events, now=30.0) == expected


def test_the_legacy_normalization_doubles_at_most() -> None:
    assert [c.normalize(CPU, n, 100, [], now=0.0) for n in (1, 2, 3, 4, 5)] == [4, 4, 6, 8, 8]


# --- reading decisions out of a recording -------------------------------------------------------------
def hpa_status(
    current: int, desired: int, metric: dict[str, Any] | None, **conditions: str
) -> dict[str, Any]:
    reasons = {"AbleToScale": "ReadyForNewScale", "ScalingActive": "ValidMetricFound", **conditions}
    status: dict[str, Any] = {
        "currentReplicas": current,
        "desiredReplicas": desired,
        "conditions": [
            {
                "type": kind,
                "status": "False" if reason.startswith(("Failed", "ScalingDisabled")) else "True",
                "reason": reason,
            }
            for kind, reason in reasons.items()
        ],
    }
    if metric is not None:
        status["currentMetrics"] = [{"type": "External", "external": {"current": metric}}]
    return status


def test_peer_decisions_find_the_value_keda_served_and_see_its_fallback() -> None:
    rec = Recording("keda-average", epoch=EPOCH)
    rec.workload = [(0.0, 1, 1), (6.0, 5, 5)]
    rec.reads = [
        (4.5, "keda", 45.0),
        (9.0, "keda", 52.0),
        (20.0, "keda", None),
        (23.0, "keda", None),
        (25.0, "keda", None),
    ]
    rec.hpa = [
        (5.0, hpa_status(1, 5, {"averageValue": "45"})),  # ceil(45 / 1 replica)
        (10.0, hpa_status(5, 5, {"averageValue": "10400m"})),  # ceil(52000m / 5)
        (21.0, hpa_status(5, 5, None, ScalingActive="FailedGetExternalMetric")),
        (26.0, hpa_status(5, 6, {"averageValue": "12"})),  # fallback 6 x 10 over 5 replicas
    ]
    decisions = peer_decisions(AVERAGE, rec)
    assert [(d.current, d.desired, d.value, d.failed, d.fallback) for d in decisions] == [
        (1, 5, 45.0, False, False),
        (5, 5, 52.0, False, False),
        (5, 5, None, True, False),
        (5, 6, None, True, True),
    ]
    assert decisions[3].failures == 3


def test_a_workload_at_zero_under_an_hpa_is_read_as_disabled() -> None:
    rec = Recording("hpa-cpu", epoch=EPOCH)
    status = hpa_status(0, 1, None, ScalingActive="ScalingDisabled")
    del status["currentReplicas"]  # the API leaves out a zero
    rec.hpa = [(3.0, status)]
    [d] = peer_decisions(CPU, rec)
    assert (d.current, d.desired, d.disabled) == (0, 0, True)


def at(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(EPOCH + seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def scaledapp_status(
    current: int, desired: int, value: float, constraints: list[dict[str, Any]], recommendation: int
) -> dict[str, Any]:
    return {
        "metrics": [{"name": "load", "value": value}],
        "lastDecision": {
            "time": at(0),
            "currentReplicas": current,
            "finalDesiredReplicas": desired,
            "recommendation": recommendation,
            "rawDesiredReplicas": recommendation,
            "reason": "DesiredWithinRange",
            "metrics": [{"name": "load", "value": value, "proposal": recommendation}],
            "constraintsApplied": constraints,
        },
        "history": {
            "recommendations": [
                {"replicas": 5, "since": at(20), "until": at(48)},
                {"replicas": recommendation, "since": at(52)},
            ]
        },
    }


def test_kopf_decisions_stand_until_the_next_and_know_when_their_window_lets_go() -> None:
    rec = Recording("keda-average", epoch=EPOCH)
    held = scaledapp_status(5, 5, 18, [{"type": "Stabilization", "replicas": 5}], recommendation=2)
    rec.scaledapp = [
        (52.5, held),
        (53.0, {**held, "conditions": []}),
        (64.0, scaledapp_status(5, 2, 18, [], 2)),
    ]
    first, second = kopf_decisions(AVERAGE, rec)
    assert (first.time, first.until, first.desired, first.stabilized) == (52.5, 64.0, 5, 5)
    assert first.window_release == pytest.approx(48 + AVERAGE.down_window)
    assert (second.desired, second.stabilized, second.until) == (2, 2, float("inf"))


def test_window_release_is_none_when_nothing_higher_is_remembered() -> None:
    history = {"recommendations": [{"replicas": 2, "since": at(0)}]}
    assert window_release(history, above=2, window=15, epoch=EPOCH) is None


def test_pairing_is_by_inputs_nearest_in_time_within_the_horizon() -> None:
    decisions = [kopf(2, 5, value=45, t=0.0, until=4.0), kopf(2, 4, value=44, t=4.0, until=9.0)]
    assert pair(AVERAGE, peer(2, 5, value=45, t=6.0), decisions) is decisions[0]
    assert pair(AVERAGE, peer(3, 5, value=45, t=6.0), decisions) is None  # another count
    assert pair(AVERAGE, peer(2, 5, value=45, t=30.0), decisions) is None  # too long after
    # CPU: the HPA's whole percent pairs with kopfscale's fraction, on the same Pods only.
    cpu = [kopf(4, 8, value=250.4, pods=settled(4))]
    assert pair(CPU, peer(4, 8, value=250, pods=settled(4)), cpu) is cpu[0]
    assert pair(CPU, peer(4, 8, value=250, pods=settled(5)), cpu) is None


def test_value_metrics_pair_on_the_ready_pods_only_outside_the_tolerance() -> None:
    one_unready = PodsState(time=0, pods=2, ready=1, with_metrics=2, fresh=0)
    all_ready = settled(2)
    mine = [kopf(2, 2, value=21, pods=all_ready)]  # ratio 1.05: the ready Pods do not matter
    assert pair(VALUE, peer(2, 2, value=21, pods=one_unready), mine) is mine[0]
    mine = [kopf(2, 3, value=30, pods=all_ready)]  # ratio 1.5: they do
    assert pair(VALUE, peer(2, 2, value=30, pods=one_unready), mine) is None
    said = [kopf(2, 2, value=30, pods=all_ready, pods_used=1)]  # kopfscale says it used 1
    assert pair(VALUE, peer(2, 2, value=30, pods=one_unready), said) is said[0]
    # kopfscale read the count (5) before the peer scaled and listed the Pods (9) after.
    raced = [kopf(5, 10, value=35, pods=settled(5), pods_used=9)]
    assert pair(VALUE, peer(5, 9, value=35, pods=settled(5)), raced) is None


def test_a_decision_looks_at_the_pods_of_its_count() -> None:
    rec = Recording("hpa-cpu")
    rec.pods = [PodsState(10.0, 1, 1, 1, 0), PodsState(24.9, 4, 1, 1, 0), PodsState(26.0, 4, 4, 1, 3)]
    # The HPA scaled 1 -> 4 at 24.8 and its status was seen at 25.0, after the new Pods were.
    assert rec.pods_for(25.0, current=1) is rec.pods[0]
    assert rec.pods_for(26.5, current=4) is rec.pods[2]


def test_quantities_as_the_hpa_writes_them() -> None:
    assert [quantity(q) for q in ("45", "10400m", "9k", "1.5", 3)] == [45, 10.4, 9000, 1.5, 3]
    assert quantity("12Mi") is None


def test_analyse_counts_a_recorded_run() -> None:
    rec = Recording("keda-average", epoch=EPOCH)
    rec.steps = [(0.0, 0), (15.0, 1)]
    rec.workload = [(0.0, 1, 1)]
    rec.reads = [(15.2, "kopfscale", 45.0), (17.0, "keda", 45.0)]
    rec.hpa = [(17.5, hpa_status(1, 5, {"averageValue": "45"}))]
    status = scaledapp_status(1, 7, 45, [], recommendation=7)  # kopfscale wants 7: a bug
    rec.scaledapp = [(15.6, status)]
    result = analyse(AVERAGE, rec)
    assert result.counts()["paired"] == 1
    assert [v.category for v in result.bugs] == [c.BUG]
    json.dumps(result.to_json(), allow_nan=False, default=str)


# --- the endpoint -------------------------------------------------------------------------------------
def test_a_step_takes_effect_at_kopfscales_next_read() -> None:
    clock = iter(range(100))
    endpoint = Endpoint(lambda: float(next(clock)))
    rec = Recording("s")
    try:
        endpoint.register(rec, 8.0)

        def read(who: str) -> float | None:
            try:
                with urllib.request.urlopen(f"{endpoint.url('s')}?reader={who}", timeout=5) as resp:
                    return float(json.loads(resp.read())["value"])
            except urllib.error.HTTPError as e:
                assert e.code == 500
                return None

        endpoint.arm("s", 1, None)
        assert read("keda") == 8.0  # not yet: kopfscale has not read
        assert read("kopfscale") is None  # switched in: the endpoint fails now
        assert read("keda") is None
        assert [(who, value) for _, who, value in rec.reads] == [
            ("keda", 8.0),
            ("kopfscale", None),
            ("keda", None),
        ]
        assert [step for _, step in rec.steps] == [1]
    finally:
        endpoint.close()


def test_a_recording_keeps_the_scenarios_it_ran() -> None:
    for s in scenarios.short() + scenarios.full():
        assert scenarios.from_json(json.loads(json.dumps(scenarios.to_json(s)))) == s


def test_every_shadow_scaledapp_mirrors_its_peer() -> None:
    for s in scenarios.short() + scenarios.full():
        app = s.scaledapp("http://127.0.0.1:1/metric/x")["spec"]
        assert app["mode"] == "Observe"
        assert app["pollingInterval"] == scenarios.PERIOD
        assert app["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": s.name}
        peer_object = s.peer_object("http://127.0.0.1:1/metric/x")
        spec = peer_object["spec"]
        assert (app["minReplicas"], app["maxReplicas"]) == (
            spec.get("minReplicas", spec.get("minReplicaCount")),
            spec.get("maxReplicas", spec.get("maxReplicaCount")),
        )
        peer_behavior = spec.get("behavior") or spec.get("advanced", {}).get(
            "horizontalPodAutoscalerConfig", {}
        ).get("behavior")
        assert app.get("behavior") == peer_behavior
        urls = json.dumps([app, peer_object])
        assert "127.0.0.1" in urls or s.metric == "cpu"


def test_a_ready_count_changing_under_the_peers_sync_is_timing_not_a_bug() -> None:
    # Seen in CI: 1 of 2 Pods unready, value 30 against Value 20 (ratio 1.5). The Pod became ready
    # again just before the HPA's sync: it decided 3 (x 2 ready); kopfscale, a round earlier, 2 (x 1).
    one_unready = PodsState(time=15.1, pods=2, ready=1, with_metrics=2, fresh=0)
    after = PodsState(time=35.09, pods=3, ready=2, with_metrics=2, fresh=1)
    p = peer(2, 3, value=30, t=35.09, pods=one_unready)
    k = kopf(2, 2, value=30, t=20.2, pods=one_unready, pods_used=1)
    verdict = c.classify(p, k, replace(context(VALUE, k, peers=[p]), pods=[one_unready, after]))
    assert (verdict.category, verdict.rule) == (c.TIMING, "Pods changing")
    # The same divergence with no such change near the peer's decision stays a bug.
    later = replace(after, time=38.0)
    verdict = c.classify(p, k, replace(context(VALUE, k, peers=[p]), pods=[one_unready, later]))
    assert verdict.rule == "unexplained"
    # And kopfscale's own count must give its decision: multiplying by 2 ready and deciding 2 is not timing.
    wrong = replace(k, pods_used=2)
    verdict = c.classify(p, wrong, replace(context(VALUE, wrong, peers=[p]), pods=[one_unready, after]))
    assert verdict.category == c.BUG
