"""Flapping detection (#15.4): more than N direction changes in a window, a suggestion from the
simulator, one event per episode, and the condition clears by itself."""

from __future__ import annotations

from typing import Any

import kopf

from kopfscale.scaledapp import flapping
from kopfscale.scaledapp.spec import parse
from kopfscale.simulate import engine, flaps
from kopfscale.simulate.trace import parse_csv

SPEC = parse(
    {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1,
        "maxReplicas": 10,
        "pollingInterval": 15,
        "metrics": [
            {
                "name": "load",
                "type": "http",
                "http": {"url": "http://x/", "valueLocation": "$.v"},
                "target": {"type": "AverageValue", "value": 10},
            }
        ],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
    }
)


def verdicts(loads: list[float], cfg: flapping.Settings) -> list[flapping.Verdict]:
    trace = parse_csv("time,load\n" + "".join(f"{15 * i},{v}\n" for i, v in enumerate(loads)))
    tracker = flapping.Tracker()
    out = []
    for tick in engine.run(SPEC, trace).ticks:
        tracker, verdict = flapping.assess(tracker, SPEC, tick.decision, tick.time, cfg, flaps.replay_changes)
        out.append(verdict)
    return out


SWINGING = [20, 60, 20, 60, 20, 60, 20, 60]  # 2 <-> 6 replicas every 15 s, with no scale-down window
STEADY = [60] * 50


def test_flapping_is_detected_once_with_a_suggestion_and_clears_by_itself() -> None:
    cfg = flapping.Settings(changes=3, window_seconds=300)
    result = verdicts([20, *SWINGING, *STEADY], cfg)
    flags = [v.flapping for v in result]
    first = flags.index(True)
    assert result[first].changes == 4  # the fourth reversal is more than 3
    assert [v.started for v in result].count(True) == 1  # one Warning event for the episode
    message = result[first].message
    assert message.startswith(
        "the count changed direction 4 times in the last 300s (more than 3): 1 -> 2 -> 6 -> 2 -> 6 -> 2 -> 6;"
    )
    assert "behavior.scaleDown.stabilizationWindowSeconds: 30 (now 0) changes direction 0 time(s)" in message
    assert all(v.message == message for v in result[first:] if v.flapping)  # no status write per round
    # The swings stop: once they have left the 300 s window the condition is False again.
    last = len(flags) - 1 - flags[::-1].index(True)
    assert not any(flags[last + 1 :]) and last < len(flags) - 1
    assert result[-1].message == "no more than 3 direction changes in 300s"


def test_below_the_threshold_nothing_happens() -> None:
    result = verdicts([20, 60, 20, 60, 20], flapping.Settings(changes=3, window_seconds=300))
    assert not any(v.flapping for v in result)


def test_a_short_window_forgets_old_reversals() -> None:
    result = verdicts([20, *SWINGING], flapping.Settings(changes=3, window_seconds=40))
    assert not any(v.flapping for v in result)


def test_settings_from_annotations() -> None:
    assert flapping.settings(None) == flapping.Settings(3, 600)
    given: dict[str, Any] = {flapping.ANNOTATION_CHANGES: "5", flapping.ANNOTATION_WINDOW: "120"}
    assert flapping.settings(given) == flapping.Settings(5, 120)
    bad = flapping.settings({flapping.ANNOTATION_CHANGES: "many", flapping.ANNOTATION_WINDOW: "0"})
    assert (bad.changes, bad.window_seconds) == (3, 600)
    assert bad.problem == (
        "annotation kopfscale.dev/flapping-changes: 'many' is not an integer >= 0 (using 3); "
        "annotation kopfscale.dev/flapping-window-seconds: '0' is not an integer >= 1 (using 600)"
    )
    off = flapping.settings({flapping.ANNOTATION_CHANGES: "0"})
    assert not off.enabled
    result = verdicts([20, *SWINGING], off)
    assert not any(v.flapping for v in result)


def test_the_condition() -> None:
    import datetime

    now = datetime.datetime(2026, 1, 5, tzinfo=datetime.UTC)
    cfg = flapping.Settings()
    c = flapping.condition(flapping.Verdict(True, True, 4, "swinging"), cfg, 3, now)
    assert (c["type"], c["status"], c["reason"], c["message"]) == (
        "Flapping",
        "True",
        "DirectionChanges",
        "swinging",
    )
    c = flapping.condition(
        flapping.Verdict(False, False, 0, "fine"), flapping.Settings(problem="bad"), 3, now
    )
    assert (c["status"], c["reason"], c["message"]) == ("False", "Stable", "fine (bad)")


def test_the_autoscaler_reports_flapping_with_one_warning_event() -> None:
    from tests.unit.test_scaledapp_autoscaler import Fake, body, tick

    fake = Fake()
    obj = body(behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    raw = dict(obj)
    raw["metadata"] = {**raw["metadata"], "annotations": {flapping.ANNOTATION_CHANGES: "2"}}
    loop = fake.loop(kopf.Body(raw))

    def conditions() -> dict[str, dict[str, Any]]:
        status = loop.current_status()
        return {c["type"]: c for c in status.get("conditions") or []}

    tick(loop)
    assert "Flapping" not in conditions()  # the condition appears with the first episode
    for value in (60, 20, 60, 20):
        fake.values["load"] = value
        tick(loop)
    warnings = [e for e in fake.events if e[1] == "Flapping"]
    assert len(warnings) == 1 and warnings[0][0] == "Warning"
    assert "changed direction 3 times in the last 600s (more than 2): 1 -> 5 -> 2 -> 5 -> 2" in warnings[0][2]
    assert conditions()["Flapping"]["status"] == "True"
    fake.values["load"] = 60
    tick(loop)
    assert len([e for e in fake.events if e[1] == "Flapping"]) == 1  # still one event for the episode
