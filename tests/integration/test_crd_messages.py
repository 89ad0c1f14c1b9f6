"""The API explains itself on the real apiserver: ``kubectl explain`` prints descriptions, CEL
rejections name the field they are about (never ``<nil>: Invalid value``), the wide DECISION
column is short, and events are signed by kopfscale."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kopf.testing import KopfRunner

from tests.conftest import Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

SCALEDAPP: dict[str, Any] = {
    "apiVersion": "kopfscale.dev/v1",
    "kind": "ScaledApp",
    "metadata": {"name": "web"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1,
        "maxReplicas": 4,
        "metrics": [
            {
                "name": "hours",
                "type": "cron",
                "cron": {"timezone": "UTC", "start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": 2},
            }
        ],
    },
}


def dry_run(cluster: Cluster, namespace: str, obj: dict[str, Any]) -> str:
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False
    )
    assert result.returncode != 0, f"accepted, but should have been rejected: {obj}"
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "field",
    [
        "scaledapp.spec",
        "scaledapp.spec.metrics",
        "scaledapp.spec.metrics.target",
        "scaledapp.spec.metrics.http.url",
        "scaledapp.spec.fallback",
        "scaledapp.spec.maxReplicas",
        "scaledapp.spec.scaleTargetRef.kind",
        "scaledapp.spec.behavior.scaleDown.policies",
        "scaledapp.status.lastDecision",
        "greeter.spec.resources",
    ],
)
def test_kubectl_explain_describes_the_field(cluster: Cluster, field: str) -> None:
    out = cluster.kubectl("explain", field).stdout
    description = out.split("DESCRIPTION:", 1)[1].split("FIELDS:", 1)[0]
    assert description.strip(), out
    assert "<empty>" not in out, out


def test_a_greeter_name_error_names_metadata_name(cluster: Cluster, namespace: str) -> None:
    body = {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "Greeter",
        "metadata": {"name": "hello.world"},
        "spec": {"message": "Hello"},
    }
    out = dry_run(cluster, namespace, body)
    assert "metadata.name: Invalid value" in out, out
    assert "metadata.name must start with a lowercase letter" in out
    assert "<nil>" not in out


def test_cross_field_rules_name_the_field(cluster: Cluster, namespace: str) -> None:
    spec = dict(SCALEDAPP["spec"], minReplicas=5, fallback={"failureThreshold": 2, "replicas": 9})
    out = dry_run(cluster, namespace, {**SCALEDAPP, "spec": spec})
    assert "spec.minReplicas: Invalid value: spec.minReplicas must be less than or equal to" in out, out
    assert "spec.fallback.replicas: Invalid value: spec.fallback.replicas must not exceed" in out
    assert "<nil>" not in out


def test_per_metric_rules_name_the_block(cluster: Cluster, namespace: str) -> None:
    metric = {"name": "q", "type": "http", "target": {"type": "AverageValue", "value": 5}}
    spec = dict(SCALEDAPP["spec"], metrics=[metric])
    out = dry_run(cluster, namespace, {**SCALEDAPP, "spec": spec})
    assert "spec.metrics[0].http: Invalid value: the http block must be set exactly when" in out, out


def test_the_wide_decision_column_is_short(cluster: Cluster, namespace: str) -> None:
    """No operator runs: the status is written by hand, as the operator would write it."""
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(SCALEDAPP))
    message = "scaled from 1 to 4: " + "the metric hours asks for more replicas; " * 20
    status = {
        "status": {
            "replicas": 4,
            "desiredReplicas": 4,
            "lastDecision": {
                "from": 1,
                "to": 4,
                "reason": "TooManyReplicas",
                "drivingMetric": "hours",
                "message": message,
            },
        }
    }
    cluster.kubectl(
        "patch", "scaledapp", "web", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    wide = cluster.kubectl("get", "scaledapp", "web", "-n", namespace, "-o", "wide").stdout
    header, row = wide.splitlines()[:2]
    assert "DECISION" in header and "DRIVER" in header
    assert "TooManyReplicas" in row and "hours" in row
    assert "asks for more" not in row
    assert len(row) < 200, row
    described = cluster.kubectl("describe", "scaledapp", "web", "-n", namespace).stdout
    assert "the metric hours asks for more replicas" in described


def test_events_are_signed_by_kopfscale(cluster: Cluster, namespace: str, operator: KopfRunner) -> None:
    body = {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "Greeter",
        "metadata": {"name": "hello"},
        "spec": {"message": "Hello"},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))

    def signed() -> list[dict[str, Any]]:
        out = cluster.kubectl(
            "get", "events", "-n", namespace, "-o", "json",
            "--field-selector", "involvedObject.kind=Greeter,involvedObject.name=hello",
        )  # fmt: skip
        return list(json.loads(out.stdout)["items"])

    items = wait_for(signed, timeout=30, what="an event about the Greeter")
    assert {e.get("source", {}).get("component") for e in items} == {"kopfscale"}, items
    assert {e.get("reportingComponent") for e in items} == {"kopfscale"}, items
