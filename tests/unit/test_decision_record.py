"""The rules that shaped a decision, in the order the policy applies them (decision_record)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from kopfscale.scaledapp import decision_record as rec
from kopfscale.scaledapp.history import History
from kopfscale.scaledapp.policy import decide
from kopfscale.scaledapp.sources import MetricReading
from kopfscale.scaledapp.spec import parse

NOW = datetime.datetime(2026, 1, 5, 8, 0, tzinfo=datetime.UTC)


def spec(**changes: Any) -> Any:
    raw: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1,
        "maxReplicas": 10,
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


def seen(replicas: int, seconds_ago: float) -> History:
    return History().record_recommendation(NOW - datetime.timedelta(seconds=seconds_ago), replicas, 600)


@pytest.mark.parametrize(
    ("s", "current", "value", "history", "expected"),
    [
        (spec(), 4, 41, History(), [("Tolerance", 4)]),
        (spec(), 2, 60, History(), []),  # 6 from 2 is within +4 pods (or +100 %) per 15 s
        (spec(), 2, 100, History(), [("Policy", 6)]),
        (spec(), 2, 1000, History(), [("Policy", 6)]),
        (spec(maxReplicas=5), 4, 80, History(), [("MaxReplicas", 5)]),
        (spec(maxReplicas=5), 7, 80, History(), [("MaxReplicas", 5)]),  # bounds first
        (spec(minReplicas=3), 4, 5, History(), [("MinReplicas", 3)]),
        (spec(paused=True), 4, 80, History(), [("Paused", 4)]),
        (
            spec(behavior={"scaleDown": {"stabilizationWindowSeconds": 300}}),
            6,
            20,
            seen(6, 60),
            [("Stabilization", 6)],
        ),
        (spec(), 3, 30, History(), []),  # ratio 1: the tolerance changed nothing
        (
            spec(minReplicas=0, metrics=[{**dict(spec().metrics[0].raw), "activationThreshold": 10}]),
            0,
            5,
            History(),
            [("Activation", 0)],
        ),
    ],
)
def test_constraints_in_order(
    s: Any, current: int, value: float, history: History, expected: list[Any]
) -> None:
    d = decide(s, current, [MetricReading("load", value)], history, now=NOW)
    applied = rec.constraints(d)
    assert [(c.type, c.replicas) for c in applied] == expected
    assert (applied[-1].replicas if applied else rec.raw_desired(d)) == d.desired


def test_scale_to_zero_and_the_cooldown() -> None:
    s = spec(minReplicas=0, cooldownPeriod=60)
    d = decide(s, 2, [MetricReading("load", 0)], History(), now=NOW)
    assert [(c.type, c.replicas) for c in rec.constraints(d)] == [("Cooldown", 1)]
    assert rec.limited_by(d) == "cooldown"


def test_a_failed_metric_holds_a_scale_down() -> None:
    s = spec(
        metrics=[*(dict(m.raw) for m in spec().metrics), {**dict(spec().metrics[0].raw), "name": "other"}]
    )
    d = decide(s, 5, [MetricReading("load", 10), MetricReading("other", error="down")], History(), now=NOW)
    assert [(c.type, c.replicas) for c in rec.constraints(d)] == [("MissingMetricHold", 5)]
    d = decide(
        s, 5, [MetricReading("load", error="down"), MetricReading("other", error="down")], History(), now=NOW
    )
    assert [(c.type, c.replicas) for c in rec.constraints(d)] == [("AllMetricsFailed", 5)]
    assert rec.limited_by(d) == "fallback"
