"""Simulator = Observe mode, tick for tick (#15.3).

An Observe-mode ScaledApp on the local control plane reads a trace from a loopback HTTP server
(the k-th request gets the trace's k-th value, an empty cell answers 500); the server takes a
snapshot of the ScaledApp's status when request k arrives, which is what round k-1 wrote. Then
``kopfscale simulate`` replays the same trace, and every round's ``status.lastDecision`` must be
the simulated tick's: the same numbers, rules and message (the two error texts differ only in
who failed: the real source says what the server answered, the trace says it had no value).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kopf.testing import KopfRunner

from kopfscale import GROUP, VERSION
from kopfscale.cli import main
from kopfscale.kube import path, transport
from tests.conftest import Cluster
from tests.helpers import JsonServer, wait_for

pytestmark = pytest.mark.integration

INTERVAL = 2  # seconds; the scale-down window (7 s) keeps the last 3 rounds with a second of slack
REPLICAS = 5  # the observed Deployment's count: Observe never changes it
#: The load over 24 rounds: tolerance, maxReplicas, the window holding a scale-down, failed reads
#: (the count held, then fallback.replicas), minReplicas, and back.
TRACE: list[float | None] = [
    50, 54, 90, 30, 30, 30, 30, 30, None, None, 60, None, 5, 5, 5, 5, 5, 45, 45, 75, 75, 20, 20, 20,
]  # fmt: skip


class TraceServer(JsonServer):
    """Serves ``{"load": TRACE[k]}`` to the k-th request (500 for None) and snapshots the status first."""

    def __init__(self, snapshot: Any) -> None:
        self.snapshots: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.done = threading.Event()
        self.snapshot = snapshot
        super().__init__(self.answer)

    def answer(self, headers: dict[str, str]) -> tuple[int, bytes]:
        k = len(self.arrivals)
        self.arrivals.append(time.monotonic())
        if k > 0:
            self.snapshots.append(self.snapshot())  # what round k-1 wrote
        if k >= len(TRACE):
            self.done.set()
        value = TRACE[min(k, len(TRACE) - 1)]
        return (500, b"backend down") if value is None else (200, json.dumps({"load": value}).encode())


def manifest(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "ScaledApp",
        "metadata": {"name": "observed"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "observed"},
            "mode": "Observe",
            "minReplicas": 2,
            "maxReplicas": 8,
            "pollingInterval": INTERVAL,
            "metrics": [
                {
                    "name": "load",
                    "type": "http",
                    "http": {"url": url, "valueLocation": "$.load", "timeout": 10},
                    "target": {"type": "AverageValue", "value": 10},
                }
            ],
            # Two failed reads in a row: the first is held, the second exceeds the threshold.
            "fallback": {"failureThreshold": 1, "replicas": 3},
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 7}},
        },
    }


@pytest.fixture()
def trace_server(namespace: str) -> Iterator[TraceServer]:
    resource = path(GROUP, VERSION, "scaledapps", namespace, "observed")
    server = TraceServer(lambda: dict((transport().get(resource) or {}).get("status") or {}))
    yield server
    server.close()


def comparable(decision: dict[str, Any], error: str | None) -> dict[str, Any]:
    """``lastDecision`` without its time, with the failed read's own text replaced by a marker."""
    text = json.dumps({k: v for k, v in decision.items() if k != "time"})
    if error:
        text = text.replace(json.dumps(error)[1:-1], "<failed read>")
    result: dict[str, Any] = json.loads(text)
    return result


def test_observe_mode_and_the_simulator_decide_the_same_every_round(
    cluster: Cluster, namespace: str, operator: KopfRunner, trace_server: TraceServer, tmp_path: Path
) -> None:
    cluster.kubectl(
        "create",
        "deployment",
        "observed",
        "-n",
        namespace,
        "--image=registry.invalid/app:1",
        f"--replicas={REPLICAS}",
    )
    # An AverageValue total is judged per Pod the workload has (/scale status.replicas), which
    # the simulator takes as the replica count: start once the Deployment has all its Pods.
    wait_for(
        lambda: (
            json.loads(cluster.kubectl("get", "deployment", "observed", "-n", namespace, "-o", "json").stdout)
            .get("status", {})
            .get("replicas")
            == REPLICAS
        ),
        what=f"the Deployment's {REPLICAS} Pods",
    )
    obj = manifest(trace_server.url)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
    assert trace_server.done.wait(timeout=INTERVAL * len(TRACE) + 60), (
        f"the operator made {len(trace_server.arrivals)} of {len(TRACE) + 1} reads"
    )
    observed = trace_server.snapshots[: len(TRACE)]
    gaps = [b - a for a, b in zip(trace_server.arrivals, trace_server.arrivals[1:], strict=False)]
    # The comparison assumes the operator kept its schedule (the simulator ticks every 2 s).
    assert all(INTERVAL - 0.9 < g < INTERVAL + 0.9 for g in gaps), f"rounds drifted: {gaps}"

    (tmp_path / "observed.yaml").write_text(yaml.safe_dump(obj))
    (tmp_path / "trace.csv").write_text(
        "time,load\n" + "".join(f"{INTERVAL * k},{'' if v is None else v}\n" for k, v in enumerate(TRACE))
    )
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            str(tmp_path / "observed.yaml"),
            "--trace",
            str(tmp_path / "trace.csv"),
            "--start-replicas",
            str(REPLICAS),
            "--output",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    simulated = json.loads(result.stdout)
    assert len(simulated) == len(observed) == len(TRACE)

    matches = 0
    for k, (status, tick) in enumerate(zip(observed, simulated, strict=True)):
        real_error = next((m.get("error") for m in status["metrics"] if m.get("error")), None)
        sim_error = tick["metrics"][0]["error"]
        assert (real_error is None) == (sim_error is None), f"round {k}: {real_error!r} vs {sim_error!r}"
        real = comparable(status["lastDecision"], real_error)
        sim = comparable(tick["lastDecision"], sim_error)
        assert real == sim, f"round {k} (load {TRACE[k]}):\n operator: {real}\nsimulator: {sim}"
        assert (
            status["desiredReplicas"] == tick["desiredReplicas"]
            and status["replicas"] == tick["replicas"] == REPLICAS
        )
        matches += 1
    print(f"Observe vs simulate: {matches}/{len(TRACE)} rounds identical")
    rules = {c["type"] for t in simulated for c in t["lastDecision"]["constraintsApplied"]}
    assert {
        "Tolerance",
        "MaxReplicas",
        "Stabilization",
        "AllMetricsFailed",
        "Fallback",
        "MinReplicas",
    } <= rules, rules


def test_from_cluster_replays_the_recorded_history(
    cluster: Cluster, namespace: str, operator: KopfRunner, trace_server: TraceServer, tmp_path: Path
) -> None:
    cluster.kubectl(
        "create",
        "deployment",
        "observed",
        "-n",
        namespace,
        "--image=registry.invalid/app:1",
        f"--replicas={REPLICAS}",
    )
    obj = manifest(trace_server.url)
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
    wait_for(lambda: len(trace_server.snapshots) >= 8, timeout=60, what="8 rounds")
    (tmp_path / "observed.yaml").write_text(yaml.safe_dump(obj))
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            str(tmp_path / "observed.yaml"),
            "--from-cluster",
            f"{namespace}/observed",
            "--output",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    ticks = json.loads(result.stdout)
    assert ticks and all(t["metrics"][0]["name"] == "recommendation" for t in ticks)
    # The replayed demand is what the ScaledApp recorded (its last window's recommendations).
    recorded = {r["replicas"] for s in trace_server.snapshots for r in s["history"]["recommendations"]}
    assert {t["metrics"][0]["value"] for t in ticks} <= recorded
    missing = CliRunner().invoke(
        main, ["simulate", str(tmp_path / "observed.yaml"), "--from-cluster", f"{namespace}/nothing"]
    )
    assert missing.exit_code == 2
    assert f"--from-cluster {namespace}/nothing: no such ScaledApp" in missing.stderr
