"""``status.lastDecision`` carries what a reader needs to recompute the decision (#15.2).

The records are the ones the operator writes (``status.decision_status`` with the round's time),
produced here by the simulator over a trace that hits tolerance, rate limits, the window, the
bounds and failed reads. From the records alone, the pure policy must give the same results.
"""

from __future__ import annotations

import datetime
from typing import Any

from kopfscale.scaledapp import policy
from kopfscale.scaledapp.history import History, parse_time
from kopfscale.scaledapp.sources import MetricReading
from kopfscale.scaledapp.spec import ScaledAppSpec, parse
from kopfscale.simulate import engine, render
from kopfscale.simulate.trace import parse_csv

SPEC = parse(
    {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 2,
        "maxReplicas": 9,
        "pollingInterval": 15,
        "metrics": [
            {
                "name": "rps",
                "type": "http",
                "http": {"url": "http://x/", "valueLocation": "$.v"},
                "target": {"type": "AverageValue", "value": 50},
            },
            {
                "name": "latency",
                "type": "http",
                "http": {"url": "http://x/", "valueLocation": "$.v"},
                "target": {"type": "Value", "value": 200},
            },
        ],
        "behavior": {
            "scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 30}]},
            "scaleDown": {"stabilizationWindowSeconds": 45},
        },
    }
)

TRACE = """time,rps,latency
0,100,150
15,104,190
30,400,210
45,420,
60,900,400
75,900,400
90,900,400
105,900,400
120,900,400
135,,
150,300,150
165,120,100
180,90,90
195,20,50
210,20,50
225,30,220
240,30,60
255,10,10
270,10,10
285,10,10
300,10,10
"""


def records() -> list[dict[str, Any]]:
    run = engine.run(SPEC, parse_csv(TRACE))
    return [t["lastDecision"] for t in render.tick_objects(run)]


def test_the_trace_exercises_the_rules() -> None:
    seen = {c["type"] for r in records() for c in r["constraintsApplied"]}
    assert {"Tolerance", "Policy", "Stabilization", "MinReplicas", "MaxReplicas", "AllMetricsFailed"} <= seen


def test_each_record_recomputes_from_its_own_fields() -> None:
    for r in records():
        proposals = []
        for item, metric in zip(r["metrics"], SPEC.metrics, strict=True):
            reading = MetricReading(item["name"], item.get("value"), item.get("error"))
            evaluation = policy.evaluate_metric(metric, reading, r["currentReplicas"], SPEC, 0)
            assert evaluation.recommendation == item.get("proposal"), r
            if evaluation.recommendation is not None:
                proposals.append(evaluation.recommendation)
        assert r["rawDesiredReplicas"] == (max(proposals) if proposals else r["currentReplicas"]), r
        final = r["rawDesiredReplicas"]
        for constraint in r["constraintsApplied"]:
            final = constraint["replicas"]
        assert final == r["finalDesiredReplicas"] == r["to"], r
        assert r["from"] == r["currentReplicas"]


def replay(spec: ScaledAppSpec, recorded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pure policy over the recorded inputs only: time, current replicas, metric values."""
    from kopfscale.scaledapp import status as st

    history = History()
    out: list[dict[str, Any]] = []
    for r in recorded:
        now = parse_time(r["time"])
        assert isinstance(now, datetime.datetime)
        readings = [MetricReading(m["name"], m.get("value"), m.get("error")) for m in r["metrics"]]
        d = policy.step(spec, r["currentReplicas"], readings, history, now=now)
        history = d.history
        out.append(st.decision_status(d, now, out[-1] if out else None))
    return out


def test_the_recorded_sequence_recomputes_to_the_same_decisions() -> None:
    recorded = records()
    assert replay(SPEC, recorded) == recorded
    assert [r["to"] for r in recorded] == [2, 2, 4, 4, 6, 6, 8, 8, 9, 9, 9, 7, 7, 5, 4, 4, 4, 4, 2, 2, 2]
    assert (
        recorded[-1]["time"] == recorded[-2]["time"] == "1970-01-01T00:04:45.000Z"
    )  # the same decision again
