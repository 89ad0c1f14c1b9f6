"""The README's Quick start, step by step, on the local control plane with the operator running:
every step succeeds and prints what the README says; errors come only in the second step.

The operator here watches only the test's namespace (``make run`` watches all); the samples
carry no namespace, so ``-n`` is the only difference from what a newcomer types. Run with
``pytest -s`` to see each command's output."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from prometheus_client import REGISTRY

from kopfscale_devcluster.binaries import REPO_ROOT
from kopfscale_devcluster.cluster import free_port
from tests.conftest import Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

SAMPLES = REPO_ROOT / "deploy" / "samples"


def show(cluster: Cluster, namespace: str, *args: str, input: str | None = None) -> str:
    """Run one README command (with ``-n``), print it and its output, return the output."""
    out = cluster.kubectl(*args, "-n", namespace, input=input).stdout
    print(f"$ kubectl {' '.join(args)}\n{out}", file=sys.__stdout__, flush=True)
    return out


def get(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout))


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (body.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def row(table: str, name: str) -> list[str]:
    header, *rows = table.strip().splitlines()
    (line,) = [r for r in rows if r.split()[0] == name]
    columns = [m.start() for m in re.finditer(r"\S+", header)]
    cells = [line[a:b].strip() for a, b in zip(columns, [*columns[1:], None], strict=True)]
    return cells


def test_the_quick_start_succeeds_first_then_shows_errors(
    cluster: Cluster, namespace: str, operator: KopfRunner
) -> None:
    # 1. A Greeter.
    assert "greeter.kopfscale.dev/hello created" in show(
        cluster, namespace, "apply", "-f", str(SAMPLES / "greeter.yaml")
    )
    wait_for(
        lambda: condition(get(cluster, namespace, "greeter", "hello"), "Ready").get("status") == "True",
        timeout=60,
        what="Greeter hello Ready",
    )
    cells = row(show(cluster, namespace, "get", "greeters"), "hello")
    assert cells[1:5] == ["Hello from kopfscale! 👋", "2", "2", "True"], cells

    # 2. Scaled by hand.
    assert "greeter.kopfscale.dev/hello scaled" in show(
        cluster, namespace, "scale", "greeter/hello", "--replicas=3"
    )
    wait_for(
        lambda: get(cluster, namespace, "greeter", "hello")["status"].get("readyReplicas") == 3,
        timeout=60,
        what="3 ready greeting Pods",
    )

    # 3. A ScaledApp on the Greeter: it scales, explained, and keeps the hand-set 3 as its floor.
    assert "scaledapp.kopfscale.dev/hello-hours created" in show(
        cluster, namespace, "apply", "-f", str(SAMPLES / "scaledapp.yaml")
    )
    wait_for(
        lambda: get(cluster, namespace, "greeter", "hello")["status"].get("readyReplicas") == 4,
        timeout=60,
        what="the ScaledApp scaling hello to 4 ready Pods",
    )
    sapp = get(cluster, namespace, "scaledapp", "hello-hours")
    assert condition(sapp, "Ready")["status"] == "True", sapp["status"]
    assert sapp["status"]["lastDecision"]["drivingMetric"] == "open-hours"
    wide = show(cluster, namespace, "get", "scaledapps", "-o", "wide")
    cells = row(wide, "hello-hours")
    assert cells[1:8] == ["Greeter/hello", "3", "5", "4", "4", "True", "True"], cells
    assert len(wide.splitlines()[1]) < 160, "the wide row stays readable"
    greeters = show(cluster, namespace, "get", "greeters")
    assert row(greeters, "hello")[2:5] == ["4", "4", "True"]
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=hello-hours", "-o", "json"
    ).stdout
    scaled = [e for e in json.loads(events)["items"] if e["reason"] == "ScaledUp"]
    assert scaled and "Greeter/hello 3 -> 4 driven by open-hours" in scaled[0]["message"]
    assert not [e for e in json.loads(events)["items"] if e["type"] == "Warning"]
    # The operator's own metrics see the same.
    labels = {"namespace": namespace, "scaledapp": "hello-hours"}
    assert REGISTRY.get_sample_value("kopfscale_scaledapp_replicas", labels) == 4
    assert REGISTRY.get_sample_value("kopfscale_scaledapp_max_replicas", labels) == 5

    # hello-by-cpu observes only: the hand-set and ScaledApp-set counts are never undone by it.
    show(cluster, namespace, "apply", "-f", str(SAMPLES / "hello-by-cpu.yaml"))
    wait_for(
        lambda: condition(get(cluster, namespace, "scaledapp", "hello-by-cpu"), "Ready"),
        timeout=60,
        what="hello-by-cpu evaluated",
    )
    assert get(cluster, namespace, "greeter", "hello")["spec"]["replicas"] == 4
    # ... and beside hello-hours, which scales hello, it shadows it, saying so (an observer writes
    # nothing, so it conflicts with nobody).
    shadow = condition(get(cluster, namespace, "scaledapp", "hello-by-cpu"), "Ready")
    assert (shadow["status"], shadow["reason"]) == ("True", "TargetScalable"), shadow
    assert "beside the ScaledApp hello-hours that scales it" in shadow["message"]

    # 4. Second step: what errors look like. The web sample's endpoints do not exist here; its
    # two addresses are pointed at closed loopback ports (tests never leave loopback), the rest
    # is the sample as written.
    text = (SAMPLES / "web.yaml").read_text()
    closed = f"http://127.0.0.1:{free_port()}"
    text = text.replace("http://prometheus.monitoring:9090", closed)
    text = text.replace("http://queue-stats.default/stats", f"{closed}/stats")
    assert closed in text and "prometheus.monitoring" not in text
    show(cluster, namespace, "apply", "-f", "-", input=text)

    def fallback() -> dict[str, Any] | None:
        body = get(cluster, namespace, "scaledapp", "web")
        return body if condition(body, "Fallback").get("status") == "True" else None

    web = wait_for(fallback, timeout=120, what="web's Fallback condition")
    assert (
        "failed more than fallback.failureThreshold=3 times in a row; counting as fallback.replicas=4"
        in condition(web, "Fallback")["message"]
    )
    described = show(cluster, namespace, "describe", "scaledapp", "web")
    assert "MetricFailed" in described and "FallbackActive" in described


def test_the_readme_quick_start_uses_these_samples() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    quick = readme.split("### Quick start", 1)[1].split("\n## ", 1)[0]
    for sample in ("greeter.yaml", "scaledapp.yaml", "web.yaml"):
        assert f"deploy/samples/{sample}" in quick
        assert Path(SAMPLES / sample).exists()
    assert "kubectl scale greeter/hello --replicas=3" in quick


def test_a_deleted_scaledapp_leaves_no_series(cluster: Cluster, namespace: str, operator: KopfRunner) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "greeter.yaml"))
    cluster.kubectl("apply", "-n", namespace, "-f", str(SAMPLES / "scaledapp.yaml"))
    labels = {"namespace": namespace, "scaledapp": "hello-hours"}
    wait_for(
        lambda: REGISTRY.get_sample_value("kopfscale_scaledapp_replicas", labels) == 4,
        timeout=60,
        what="the ScaledApp's series",
    )
    cluster.kubectl("delete", "-n", namespace, "scaledapp", "hello-hours", "--wait=true", timeout=60)
    wait_for(
        lambda: REGISTRY.get_sample_value("kopfscale_scaledapp_replicas", labels) is None,
        timeout=30,
        what="the series dropped",
    )
    exposed = [s for f in REGISTRY.collect() for s in f.samples if s.labels.get("namespace") == namespace
               and s.labels.get("scaledapp") == "hello-hours"]  # fmt: skip
    assert exposed == []
