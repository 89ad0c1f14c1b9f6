"""The pure builders and the match rule the controller's "write nothing" promise rests on."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kopfscale.greeter import manifests as m
from kopfscale.kube import ownership
from kopfscale.settings import OperatorSettings

SETTINGS = OperatorSettings(greeter_image="example.org/kopfscale:1", cluster_domain="cluster.local")
OWNER = m.Owner(name="hello", namespace="ns", uid="uid-1")


def spec(**overrides: Any) -> m.GreeterSpec:
    return m.GreeterSpec.from_spec({"message": "Hello", **overrides})


def env(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


def test_spec_defaults_match_the_crd() -> None:
    parsed = m.GreeterSpec.from_spec({"message": "Hi"})
    assert (parsed.replicas, parsed.port, parsed.image, parsed.service_type, parsed.resources) == (
        1,
        8080,
        None,
        "ClusterIP",
        None,
    )


def test_deployment_is_named_labelled_and_owned() -> None:
    d = m.build_deployment(OWNER, spec(replicas=3), SETTINGS)
    assert d["metadata"]["name"] == "hello" and d["metadata"]["namespace"] == "ns"
    assert d["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "kopfscale.dev/v1",
            "kind": "Greeter",
            "name": "hello",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = d["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "greeter"
    assert labels["app.kubernetes.io/instance"] == "hello"
    assert labels["app.kubernetes.io/managed-by"] == "kopfscale"
    assert labels["app.kubernetes.io/component"] == "greeter"
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["selector"]["matchLabels"] == m.selector_labels("hello")
    template_labels = d["spec"]["template"]["metadata"]["labels"]
    assert m.selector_labels("hello").items() <= template_labels.items()


def test_deployment_runs_the_greeter_with_probes() -> None:
    d = m.build_deployment(OWNER, spec(message="Grüß dich 👋"), SETTINGS)
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example.org/kopfscale:1"
    assert container["command"] == ["kopfscale", "greet"]
    assert env(d)["GREETER_MESSAGE"] == "Grüß dich 👋"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_spec_image_overrides_the_setting() -> None:
    d = m.build_deployment(OWNER, spec(image="registry:5000/mine@sha256:" + "a" * 64), SETTINGS)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry:5000/mine")


def test_message_change_changes_the_pod_template() -> None:
    a = m.build_deployment(OWNER, spec(message="one"), SETTINGS)
    b = m.build_deployment(OWNER, spec(message="two"), SETTINGS)
    assert a["spec"]["template"] != b["spec"]["template"]
    assert m.child_differences(b, a) == [
        "spec.template.spec.containers.[greeter].env.[GREETER_MESSAGE].value"
    ]


def test_service_maps_the_port_to_the_named_container_port() -> None:
    s = m.build_service(OWNER, spec(port=80, serviceType="NodePort"))
    assert s["spec"]["type"] == "NodePort"
    assert s["spec"]["selector"] == m.selector_labels("hello")
    assert s["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert s["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_selector_string_and_url() -> None:
    assert m.selector_string("hello") == "app.kubernetes.io/instance=hello,app.kubernetes.io/name=greeter"
    assert m.service_url("hello", "ns", 8080, "cluster.local") == "http://hello.ns.svc.cluster.local:8080"


def live_from(desired: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver would hand back: defaults and server-set fields added."""
    live = m.prune_nones(copy.deepcopy(desired))
    live["metadata"].update(
        resourceVersion="42",
        uid="child-uid",
        generation=1,
        labels={**live["metadata"]["labels"], "extra": "someone-elses"},
    )
    live["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "1"}
    if live["kind"] == "Deployment":
        pod = live["spec"]["template"]["spec"]
        pod.update(restartPolicy="Always", dnsPolicy="ClusterFirst")
        container = pod["containers"][0]
        container.setdefault("resources", {})
        container.update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
        for probe in ("readinessProbe", "livenessProbe"):
            container[probe]["httpGet"]["scheme"] = "HTTP"
            container[probe].update(timeoutSeconds=1, successThreshold=1)
        live["spec"].update(
            revisionHistoryLimit=10, progressDeadlineSeconds=600, strategy={"type": "RollingUpdate"}
        )
        live["status"] = {"replicas": 1}
    else:
        live["spec"].update(clusterIP="10.0.0.7", clusterIPs=["10.0.0.7"], sessionAffinity="None")
        if live["spec"]["type"] != "ClusterIP":
            live["spec"]["ports"][0]["nodePort"] = 31234
    return live


@pytest.mark.parametrize("service_type", ["ClusterIP", "NodePort", "LoadBalancer"])
def test_a_defaulted_live_child_matches(service_type: str) -> None:
    s = spec(serviceType=service_type, resources={"limits": {"cpu": "0.5", "memory": "64Mi"}})
    for desired in (m.build_deployment(OWNER, s, SETTINGS), m.build_service(OWNER, s)):
        assert m.child_differences(desired, live_from(desired)) == []


def test_canonicalised_quantities_match() -> None:
    desired = m.build_deployment(
        OWNER, spec(resources={"limits": {"cpu": "0.5", "memory": 67108864}}), SETTINGS
    )
    live = live_from(desired)
    live["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"cpu": "500m", "memory": "64Mi"}
    }
    assert m.child_differences(desired, live) == []
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "600m"
    assert m.child_differences(desired, live) == [
        "spec.template.spec.containers.[greeter].resources.limits.cpu"
    ]


def test_removed_resources_are_drift_and_patched_away_with_null() -> None:
    desired = m.build_deployment(OWNER, spec(), SETTINGS)
    live = live_from(desired)
    live["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    assert m.child_differences(desired, live) == ["spec.template.spec.containers.[greeter].resources"]
    patch = m.merge_patch(desired, "42")
    assert patch["spec"]["template"]["spec"]["containers"][0]["resources"] is None
    assert patch["metadata"] == {"labels": desired["metadata"]["labels"], "resourceVersion": "42"}
    assert "ownerReferences" not in patch["metadata"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["spec"].update(replicas=5), "spec.replicas"),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="evil:1"),
            "spec.template.spec.containers.[greeter].image",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "X", "value": "1"}
            ),
            "spec.template.spec.containers.[greeter].env",
        ),
        (
            lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe"),
            "spec.template.spec.containers.[greeter].readinessProbe",
        ),
        (
            lambda d: d["metadata"]["labels"].pop("app.kubernetes.io/managed-by"),
            "metadata.labels.app.kubernetes.io/managed-by",
        ),
        (lambda d: d["metadata"].update(ownerReferences=[]), "metadata.ownerReferences"),
    ],
)
def test_edits_of_owned_fields_are_drift(edit: Any, expected: str) -> None:
    desired = m.build_deployment(OWNER, spec(), SETTINGS)
    live = live_from(desired)
    edit(live)
    assert m.child_differences(desired, live) == [expected]


def test_service_port_and_type_drift() -> None:
    desired = m.build_service(OWNER, spec())
    live = live_from(desired)
    live["spec"]["ports"][0]["port"] = 9999
    live["spec"]["type"] = "NodePort"
    assert m.child_differences(desired, live) == ["spec.type", "spec.ports.[http].port"]


def test_ownership_is_by_uid_and_controller() -> None:
    child = {"metadata": {"ownerReferences": [{"uid": "uid-1", "controller": True, "kind": "Greeter"}]}}
    assert ownership.is_controlled_by(child, "uid-1")
    assert not ownership.is_controlled_by(child, "uid-2")
    assert not ownership.is_controlled_by({"metadata": {"ownerReferences": [{"uid": "uid-1"}]}}, "uid-1")
    assert not ownership.is_controlled_by({"metadata": {}}, "uid-1")
    assert ownership.controller_of(child) == child["metadata"]["ownerReferences"][0]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)


@given(json_values)
def test_anything_matches_itself_once_nones_are_pruned(value: Any) -> None:
    assert m.differences(value, m.prune_nones(value)) == []


@given(
    st.dictionaries(st.text(max_size=3), json_values, max_size=3),
    st.dictionaries(st.text(max_size=3), json_values, max_size=3),
)
def test_extra_live_keys_never_count(desired: dict[str, Any], extra: dict[str, Any]) -> None:
    live = {**{k: v for k, v in extra.items() if k not in desired}, **m.prune_nones(desired)}
    assert m.differences(desired, live) == []


def test_describe_differences_is_bounded() -> None:
    assert m.describe_differences(["a", "b"]) == "a, b"
    assert m.describe_differences([str(i) for i in range(6)], limit=2) == "0, 1 and 4 more"
