"""The ScaledApp API at ``kubectl apply``: the issue's document is accepted as written, and invalid
objects are rejected by the API server (OpenAPI schema + CEL) with a message saying what is wrong."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.conftest import Cluster

pytestmark = pytest.mark.integration

# The shape fixed by the issue, verbatim (as JSON to edit it per case).
EXAMPLE: dict[str, Any] = {
    "apiVersion": "kopfscale.dev/v1",
    "kind": "ScaledApp",
    "metadata": {"name": "web"},
    "spec": {
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {"name": "web", "image": "nginx:1.27", "resources": {"requests": {"cpu": "100m"}}}
                ]
            },
        },
        "minReplicas": 1,
        "maxReplicas": 10,
        "pollingInterval": 15,
        "cooldownPeriod": 300,
        "metrics": [
            {
                "name": "rps",
                "type": "prometheus",
                "prometheus": {
                    "serverAddress": "http://prometheus.monitoring:9090",
                    "query": 'sum(rate(http_requests_total{app="web"}[1m]))',
                },
                "target": {"type": "AverageValue", "value": 50},
                "activationThreshold": 5,
            },
            {
                "name": "queue",
                "type": "http",
                "http": {"url": "http://queue-stats.default/stats", "valueLocation": "$.queues.jobs.depth"},
                "target": {"type": "AverageValue", "value": 20},
            },
            {
                "name": "business-hours",
                "type": "cron",
                "cron": {
                    "timezone": "Europe/Berlin",
                    "start": "0 8 * * 1-5",
                    "end": "0 18 * * 1-5",
                    "desiredReplicas": 3,
                },
            },
            {
                "name": "cpu",
                "type": "resource",
                "resource": {"name": "cpu"},
                "target": {"type": "Utilization", "value": 70},
            },
        ],
        "behavior": {
            "scaleDown": {
                "stabilizationWindowSeconds": 300,
                "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
            }
        },
        "fallback": {"failureThreshold": 3, "replicas": 4},
        "mode": "Auto",
        "paused": False,
    },
}

EXAMPLE_YAML = """
apiVersion: kopfscale.dev/v1
kind: ScaledApp
metadata: {name: web}
spec:
  template:                      # or: scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
    metadata: {labels: {app: web}}
    spec:
      containers:
        - {name: web, image: nginx:1.27, resources: {requests: {cpu: 100m}}}
  minReplicas: 1
  maxReplicas: 10
  pollingInterval: 15
  cooldownPeriod: 300
  metrics:
    - name: rps
      type: prometheus
      prometheus: {serverAddress: "http://prometheus.monitoring:9090", query: 'sum(rate(http_requests_total{app="web"}[1m]))'}
      target: {type: AverageValue, value: 50}
      activationThreshold: 5
    - name: queue
      type: http
      http: {url: "http://queue-stats.default/stats", valueLocation: "$.queues.jobs.depth"}
      target: {type: AverageValue, value: 20}
    - name: business-hours
      type: cron
      cron: {timezone: Europe/Berlin, start: "0 8 * * 1-5", end: "0 18 * * 1-5", desiredReplicas: 3}
    - name: cpu
      type: resource
      resource: {name: cpu}
      target: {type: Utilization, value: 70}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
      policies: [{type: Percent, value: 50, periodSeconds: 60}]
  fallback: {failureThreshold: 3, replicas: 4}
  mode: Auto
  paused: false
"""  # noqa: E501  (verbatim from the issue)


def spec_with(**changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(EXAMPLE)
    for key, value in changes.items():
        if value is None:
            obj["spec"].pop(key, None)
        else:
            obj["spec"][key] = value
    return obj


def metric(index: int, **changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(EXAMPLE)
    m = obj["spec"]["metrics"][index]
    for key, value in changes.items():
        if value is None:
            m.pop(key, None)
        else:
            m[key] = value
    return obj


def cron(**changes: Any) -> dict[str, Any]:
    return metric(2, cron={**EXAMPLE["spec"]["metrics"][2]["cron"], **changes})


REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("min > max", spec_with(minReplicas=11), "minReplicas must be less than or equal to spec.maxReplicas"),
    ("both template and scaleTargetRef", spec_with(scaleTargetRef=REF), "exactly one of spec.template"),
    ("neither template nor scaleTargetRef", spec_with(template=None), "exactly one of spec.template"),
    ("no maxReplicas", spec_with(maxReplicas=None), "spec.maxReplicas: Required value"),
    ("no metrics", spec_with(metrics=[]), "spec.metrics: Invalid value"),
    ("unknown metric type", metric(1, type="kafka"), 'Unsupported value: "kafka"'),
    ("negative pollingInterval", spec_with(pollingInterval=-5), "spec.pollingInterval"),
    ("zero pollingInterval", spec_with(pollingInterval=0), "should be greater than or equal to 1"),
    ("negative cooldownPeriod", spec_with(cooldownPeriod=-1), "spec.cooldownPeriod"),
    ("negative minReplicas", spec_with(minReplicas=-1), "spec.minReplicas"),
    ("bad cron start (4 fields)", cron(start="0 8 * *"), "start must be a 5-field cron expression"),
    ("bad cron end (6 fields)", cron(end="0 0 18 * * 1-5"), "end must be a 5-field cron expression"),
    ("cron start == end", cron(end="0 8 * * 1-5"), "cron start and end must differ"),
    ("bad timezone", cron(timezone="Not A Zone!"), "timezone must be an IANA zone name"),
    ("cron with a target", metric(2, target={"type": "Value", "value": 1}), "cron metrics take no target"),
    ("http without a target", metric(1, target=None), "a target is required"),
    ("type without its block", metric(1, http=None), "the http block must be set exactly when type is http"),
    (
        "two source blocks",
        metric(0, http={"url": "http://x/", "valueLocation": "$.v"}),
        "the http block must be set",
    ),
    (
        "Utilization on a non-resource metric",
        metric(0, target={"type": "Utilization", "value": 50}),
        "target type Utilization is only for resource",
    ),
    (
        "Value on a resource metric",
        metric(3, target={"type": "Value", "value": 50}),
        "resource metrics take a Utilization or AverageValue target",
    ),
    ("unknown target type", metric(0, target={"type": "Ratio", "value": 1}), 'Unsupported value: "Ratio"'),
    ("zero target value", metric(0, target={"type": "AverageValue", "value": 0}), "target.value"),
    ("unknown resource", metric(3, resource={"name": "gpu"}), 'Unsupported value: "gpu"'),
    ("duplicate metric names", metric(1, name="rps"), "Duplicate value"),
    (
        "server address not a URL",
        metric(0, prometheus={"serverAddress": "prometheus:9090", "query": "up"}),
        "serverAddress",
    ),
    (
        "bad policy type",
        spec_with(
            behavior={"scaleUp": {"policies": [{"type": "Replicas", "value": 1, "periodSeconds": 15}]}}
        ),
        'Unsupported value: "Replicas"',
    ),
    (
        "policy period above 1800 s",
        spec_with(
            behavior={"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 3600}]}}
        ),
        "periodSeconds",
    ),
    (
        "bad selectPolicy",
        spec_with(behavior={"scaleDown": {"selectPolicy": "Average"}}),
        'Unsupported value: "Average"',
    ),
    (
        "fallback above max",
        spec_with(fallback={"failureThreshold": 3, "replicas": 11}),
        "fallback.replicas must not exceed",
    ),
    ("fallback threshold 0", spec_with(fallback={"failureThreshold": 0, "replicas": 2}), "failureThreshold"),
    ("unknown mode", spec_with(mode="DryRun"), 'Unsupported value: "DryRun"'),
    ("cron floor above max", cron(desiredReplicas=20), "desiredReplicas must not exceed spec.maxReplicas"),
    (
        "zero min with only cpu",
        spec_with(minReplicas=0, metrics=[EXAMPLE["spec"]["metrics"][3]]),
        "minReplicas 0 needs at least one metric that is not cpu/memory",
    ),
    (
        "scaleTargetRef without a name",
        spec_with(template=None, scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment"}),
        "spec.scaleTargetRef.name: Required value",
    ),
    (
        "template without containers",
        spec_with(template={"spec": {}}),
        "spec.template.spec.containers: Required value",
    ),
    (
        "template with a name that cannot be a label value",
        {**spec_with(), "metadata": {"name": "a" * 64}},
        "spec.template: Invalid value: with spec.template the ScaledApp's name becomes its Deployment's name",
    ),
]


def apply(cluster: Cluster, namespace: str, obj: dict[str, Any] | str) -> tuple[int, str]:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    result = cluster.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=text, check=False)
    return result.returncode, result.stdout + result.stderr


def test_the_issue_document_is_accepted_as_written(cluster: Cluster, namespace: str) -> None:
    code, output = apply(cluster, namespace, EXAMPLE_YAML)
    assert code == 0, output
    code, output = apply(cluster, namespace, EXAMPLE)
    assert code == 0, output


def test_a_scale_target_ref_with_min_zero_is_accepted(cluster: Cluster, namespace: str) -> None:
    obj = spec_with(template=None, scaleTargetRef=REF, minReplicas=0, initialCooldownPeriod=60)
    code, output = apply(cluster, namespace, obj)
    assert code == 0, output


def test_defaults_are_applied(cluster: Cluster, namespace: str) -> None:
    obj = spec_with(pollingInterval=None, cooldownPeriod=None, minReplicas=None, mode=None, paused=None)
    obj["metadata"]["name"] = "defaults"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
    spec = json.loads(cluster.kubectl("get", "scaledapp", "defaults", "-n", namespace, "-o", "json").stdout)[
        "spec"
    ]
    assert (spec["minReplicas"], spec["pollingInterval"], spec["cooldownPeriod"]) == (1, 15, 300)
    assert (spec["mode"], spec["paused"], spec["initialCooldownPeriod"]) == ("Auto", False, 0)


def test_at_least_15_invalid_cases() -> None:
    assert len(INVALID) >= 15


@pytest.mark.parametrize(("what", "obj", "message"), INVALID, ids=[case[0] for case in INVALID])
def test_invalid_scaledapps_are_rejected(
    cluster: Cluster, namespace: str, what: str, obj: dict[str, Any], message: str
) -> None:
    code, output = apply(cluster, namespace, obj)
    assert code != 0, f"{what}: accepted, but should have been rejected"
    assert message in output, f"{what}: rejected without the expected message {message!r}:\n{output}"
