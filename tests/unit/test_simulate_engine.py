"""The tick loop: cron from the clock, Observe keeps the count, the compare maths, the replay."""

from __future__ import annotations

import datetime
from typing import Any

from kopfscale.scaledapp.spec import parse
from kopfscale.simulate import engine, replay
from kopfscale.simulate.summary import summarize
from kopfscale.simulate.trace import parse_csv

UTC = datetime.UTC


def spec(**changes: Any) -> Any:
    raw: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1,
        "maxReplicas": 10,
        "pollingInterval": 60,
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
    raw.update(changes)
    return parse(raw)


def test_cron_metrics_come_from_the_tick_clock() -> None:
    business = {
        "name": "business-hours",
        "type": "cron",
        "cron": {
            "timezone": "Europe/Berlin",
            "start": "0 8 * * 1-5",
            "end": "0 9 * * 1-5",
            "desiredReplicas": 4,
        },
    }
    s = spec(metrics=[dict(spec().metrics[0].raw), business])
    # Monday 2026-01-05, 06:58 UTC = 07:58 in Berlin: the window opens two ticks in, closes 60 ticks later.
    trace = parse_csv("time,load\n2026-01-05T06:58:00Z,5\n2026-01-05T08:05:00Z,5\n")
    run = engine.run(s, trace)
    replicas = [t.replicas for t in run.ticks]
    assert replicas[:2] == [1, 1]
    assert replicas[2] == 4  # 07:00 UTC = 08:00 Berlin
    assert replicas[61] == 4  # 07:59 UTC
    assert replicas[62] == 1  # 08:00 UTC = 09:00 Berlin, the window has closed
    assert run.ticks[2].decision.driver == "business-hours"


def test_observe_decides_without_scaling() -> None:
    trace = parse_csv("time,load\n0,35\n60,35\n120,5\n")
    auto = engine.run(spec(), trace)
    observe = engine.run(spec(mode="Observe"), trace)
    assert [t.replicas for t in auto.ticks] == [4, 4, 1]
    assert [t.replicas for t in observe.ticks] == [1, 1, 1]
    assert [t.decision.desired for t in observe.ticks] == [4, 4, 1]
    assert summarize(observe).changes == 0


def test_summary_maths() -> None:
    # 1 replica; load 35 -> 4 replicas (above target at 1 replica); 35 at 4 replicas is below 40.
    trace = parse_csv("time,load\n0,35\n60,35\n120,5\n")
    s = summarize(engine.run(spec(), trace))
    assert s.replica_minutes == 4 + 4 + 1  # replicas after each tick x 1 minute
    assert s.changes == 2
    assert s.seconds_above_target == 60  # only the first minute: 35 per 1 replica > 10
    assert (s.peak_replicas, s.final_replicas, s.ticks) == (4, 1, 3)


def test_ticks_follow_the_polling_interval_not_the_rows() -> None:
    trace = parse_csv("time,load\n0,5\n150,50\n")
    run = engine.run(spec(), trace)
    assert [t.offset for t in run.ticks] == [0, 60, 120]  # 150 s is not reached by a tick
    assert [t.decision.metrics[0].value for t in run.ticks] == [5, 5, 5]


def test_a_recorded_history_replays_as_demand() -> None:
    status = {
        "replicas": 3,
        "history": {
            "recommendations": [
                {"replicas": 2, "since": "2026-01-05T08:00:00.000Z", "until": "2026-01-05T08:01:00.000Z"},
                {"replicas": 5, "since": "2026-01-05T08:01:30.000Z", "until": "2026-01-05T08:02:00.000Z"},
                {"replicas": 3, "since": "2026-01-05T08:02:30.000Z"},
            ],
            "scaleEvents": [{"time": "2026-01-05T08:02:30.000Z", "change": -2}],
        },
    }
    now = datetime.datetime(2026, 1, 5, 8, 3, tzinfo=UTC)
    trace = replay.trace_from_status(status, "default/web", now)
    assert trace.start == datetime.datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    assert trace.times == (0, 60, 90, 120, 150, 180)
    assert trace.columns[replay.METRIC] == (2, 2, 5, 5, 3, 3)
    assert replay.start_replicas(status, trace, now) == 5
    s = replay.replay_spec(spec(pollingInterval=30))
    run = engine.run(s, trace, start_replicas=5)
    # With the demand fed back one for one and no scale-down window: 5 -> 2 -> 2 -> 5 ...
    assert [t.replicas for t in run.ticks] == [2, 2, 2, 5, 5, 3, 3]
