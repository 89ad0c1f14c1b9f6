"""The Greeter API at ``kubectl apply``: bad input is refused by the apiserver with a message
that says what is wrong (OpenAPI schema, CEL rules, strict field validation). No operator runs:
this is the API alone, so nothing here can be the controller's doing."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster

pytestmark = pytest.mark.integration

VALID: dict[str, Any] = {
    "apiVersion": "kopfscale.dev/v1",
    "kind": "Greeter",
    "metadata": {"name": "hello"},
    "spec": {"message": "Hello", "replicas": 1, "port": 8080, "serviceType": "ClusterIP"},
}


def variant(
    spec: dict[str, Any] | None = None, drop: tuple[str, ...] = (), name: str | None = None, **top: Any
) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    body["spec"].update(spec or {})
    for key in drop:
        body["spec"].pop(key, None)
    if name is not None:
        body["metadata"]["name"] = name
    body.update(top)
    return body


# (id, object, fragments the apiserver's message must contain)
INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("empty-message", variant({"message": ""}), ["spec.message", "at least 1 chars long"]),
    (
        "blank-message",
        variant({"message": " \t\n "}),
        ["spec.message must contain something other than whitespace"],
    ),
    ("message-too-long", variant({"message": "x" * 1025}), ["spec.message", "Too long", "1024"]),
    ("message-missing", variant(drop=("message",)), ["spec.message: Required value"]),
    ("message-not-a-string", variant({"message": 42}), ["spec.message", "must be of type string"]),
    ("message-with-nul", variant({"message": "a\u0000b"}), ["spec.message must not contain NUL"]),
    ("spec-missing", {**copy.deepcopy(VALID), "spec": None}, ["spec: Required value"]),
    ("negative-replicas", variant({"replicas": -1}), ["spec.replicas", "greater than or equal to 0"]),
    ("too-many-replicas", variant({"replicas": 101}), ["spec.replicas", "less than or equal to 100"]),
    ("replicas-a-string", variant({"replicas": "three"}), ["spec.replicas", "must be of type integer"]),
    ("replicas-fractional", variant({"replicas": 1.5}), ["spec.replicas", "must be of type integer"]),
    ("port-0", variant({"port": 0}), ["spec.port", "greater than or equal to 1"]),
    ("port-70000", variant({"port": 70000}), ["spec.port", "less than or equal to 65535"]),
    ("port-a-name", variant({"port": "http"}), ["spec.port", "must be of type integer"]),
    (
        "unknown-service-type",
        variant({"serviceType": "ExternalName"}),
        [
            "spec.serviceType",
            'Unsupported value: "ExternalName"',
            '"ClusterIP"',
            '"NodePort"',
            '"LoadBalancer"',
        ],
    ),
    (
        "service-type-wrong-case",
        variant({"serviceType": "clusterip"}),
        ["spec.serviceType", "Unsupported value"],
    ),
    ("empty-image", variant({"image": ""}), ["spec.image", "at least 1 chars long"]),
    (
        "image-with-space",
        variant({"image": "nginx latest"}),
        ["spec.image must be a container image reference"],
    ),
    (
        "image-with-scheme",
        variant({"image": "https://ghcr.io/x/y"}),
        ["spec.image must be a container image reference"],
    ),
    ("unknown-spec-field", variant({"colour": "blue"}), ['unknown field "spec.colour"']),
    (
        "unknown-resources-field",
        variant({"resources": {"limitz": {"cpu": "1"}}}),
        ['unknown field "spec.resources.limitz"'],
    ),
    (
        "bad-quantity",
        variant({"resources": {"limits": {"cpu": "lots"}}}),
        ["resource amounts must be non-negative quantities"],
    ),
    (
        "negative-quantity",
        variant({"resources": {"requests": {"memory": "-1Gi"}}}),
        ["resource amounts must be non-negative quantities"],
    ),
    (
        "bad-resource-name",
        variant({"resources": {"limits": {"gpu": 1}}}),
        ["resource names must be cpu, memory"],
    ),
    (
        "requests-over-limits",
        variant({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}}),
        ["spec.resources.requests must not exceed spec.resources.limits"],
    ),
    ("name-too-long-for-a-service", variant(name="g" * 64), ["metadata.name must be at most 63 characters"]),
    ("name-with-a-dot", variant(name="hello.world"), ["metadata.name must start with a lowercase letter"]),
    ("name-starting-with-a-digit", variant(name="1hello"), ["DNS-1035 label"]),
]


def apply(cluster: Cluster, namespace: str, body: dict[str, Any], *extra: str) -> Any:
    return cluster.kubectl("apply", "-n", namespace, *extra, "-f", "-", input=json.dumps(body), check=False)


@pytest.mark.parametrize(
    ("body", "fragments"), [(b, f) for _, b, f in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_invalid_greeter_is_refused_with_a_clear_message(
    cluster: Cluster, namespace: str, body: dict[str, Any], fragments: list[str]
) -> None:
    result = apply(cluster, namespace, body)
    assert result.returncode != 0, f"accepted: {result.stdout}"
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    listed = cluster.kubectl("get", "greeters", "-n", namespace, "-o", "name")
    assert listed.stdout.strip() == ""


def test_the_table_is_big_enough() -> None:
    assert len(INVALID) >= 15


VALID_CASES: dict[str, dict[str, Any]] = {
    "minimal": {**copy.deepcopy(VALID), "spec": {"message": "Hi"}},
    "unicode-at-max-length": variant({"message": "ü" * 1023 + "👋"}),
    "longest-name": variant(name="g" * 63),
    "everything": variant(
        {
            "replicas": 0,
            "port": 65535,
            "serviceType": "LoadBalancer",
            "image": "registry.example.com:5000/greeter@sha256:" + "a" * 64,
            "resources": {
                "requests": {"cpu": "100m", "memory": 33554432},
                "limits": {"cpu": 1, "memory": "64Mi"},
            },
        }
    ),
}


@pytest.mark.parametrize("case", list(VALID_CASES))
def test_valid_greeter_is_accepted_with_defaults(cluster: Cluster, namespace: str, case: str) -> None:
    body = VALID_CASES[case]
    result = apply(cluster, namespace, body)
    assert result.returncode == 0, result.stderr
    stored = json.loads(
        cluster.kubectl("get", "greeter", body["metadata"]["name"], "-n", namespace, "-o", "json").stdout
    )
    assert stored["spec"]["message"] == body["spec"]["message"]
    if case == "minimal":
        assert stored["spec"] == {"message": "Hi", "replicas": 1, "port": 8080, "serviceType": "ClusterIP"}


def test_unknown_fields_are_pruned_when_not_rejected(cluster: Cluster, namespace: str) -> None:
    body = variant({"colour": "blue"})
    result = apply(cluster, namespace, body, "--validate=false")
    assert result.returncode == 0, result.stderr
    stored = json.loads(cluster.kubectl("get", "greeter", "hello", "-n", namespace, "-o", "json").stdout)
    assert "colour" not in stored["spec"]


def test_kubectl_explain_teaches_the_api(cluster: Cluster) -> None:
    explained = cluster.kubectl("explain", "greeter.spec").stdout
    for field in ("message", "replicas", "port", "image", "serviceType", "resources"):
        assert field in explained
    assert "Any Unicode text" in explained


def test_the_readme_sample_applies(cluster: Cluster, namespace: str) -> None:
    sample = Path(__file__).parents[2] / "deploy" / "samples" / "greeter.yaml"
    cluster.kubectl("apply", "-n", namespace, "-f", str(sample))
    stored = json.loads(cluster.kubectl("get", "greeter", "hello", "-n", namespace, "-o", "json").stdout)
    assert stored["spec"]["replicas"] == 2
