"""The chart's tenant-safety parts, checked without a cluster: the admission policy (on by default,
off by a value), Secret reading only when asked for (and namespaced in a namespaced install),
and the egress settings reaching the operator's environment (loopback refused by default)."""

from __future__ import annotations

from typing import Any

from .test_chart import objects, rbac_rules, render


def kinds(text: str) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in objects(text):
        found.setdefault(obj["kind"], []).append(obj)
    return found


def operator_env(text: str) -> dict[str, str]:
    (deployment,) = kinds(text)["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"] if "value" in e}


def test_the_admission_policy_is_on_by_default_and_bound() -> None:
    found = kinds(render())
    (policy,) = found["ValidatingAdmissionPolicy"]
    (binding,) = found["ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"] == "kopfscale-scaledapp-author-rights"
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["operations"] == ["CREATE", "UPDATE"] and rule["resources"] == ["scaledapps"]
    checks = " ".join(v["expression"] for v in policy["spec"]["validations"])
    assert "check('create')" in checks and "subresource('scale')" in checks and "check('update')" in checks
    assert "check('get')" in checks


def test_the_admission_policy_can_be_turned_off_and_is_not_in_the_namespace_only_install() -> None:
    assert "ValidatingAdmissionPolicy" not in kinds(render("--set", "admissionPolicy.enabled=false"))
    assert "ValidatingAdmissionPolicy" not in kinds(render("--set", "plain.namespaceless=true"))
    selector = render("--set", "admissionPolicy.namespaceSelector.matchLabels.team=a")
    (binding,) = kinds(selector)["ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {"matchLabels": {"team": "a"}}


def test_secrets_are_readable_only_when_the_value_says_so() -> None:
    def secret_rules(*args: str) -> list[tuple[str, dict[str, Any]]]:
        return [(kind, rule) for kind, rule in rbac_rules(render(*args)) if "secrets" in rule["resources"]]

    assert secret_rules() == []
    ((kind, rule),) = secret_rules("--set", "rbac.readSecrets=true")
    assert kind == "ClusterRole" and rule == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    namespaced = secret_rules("--set", "rbac.readSecrets=true", "--set", "watchNamespaces={a,b}")
    assert [kind for kind, _ in namespaced] == ["Role", "Role"]
    assert [kind for kind, _ in secret_rules("--set", "rbac.readSecrets=true,plain.namespaceless=true")] == [
        "Role"
    ]


def test_egress_values_reach_the_operator_and_loopback_is_refused_by_default() -> None:
    assert operator_env(render())["KOPFSCALE_EGRESS_ALLOW_LOOPBACK"] == "false"
    env = operator_env(
        render(
            "--set",
            "egress.allowLoopback=true,egress.allowCIDRs={169.254.20.10/32},egress.denyCIDRs={10.0.0.0/8}",
            "--set",
            "egress.denyHosts={*.corp.example,vault},egress.denyPorts={2379}",
        )
    )
    assert env["KOPFSCALE_EGRESS_ALLOW_LOOPBACK"] == "true"
    assert env["KOPFSCALE_EGRESS_ALLOW_CIDRS"] == "169.254.20.10/32"
    assert env["KOPFSCALE_EGRESS_DENY_CIDRS"] == "10.0.0.0/8"
    assert env["KOPFSCALE_EGRESS_DENY_HOSTS"] == "*.corp.example,vault"
    assert env["KOPFSCALE_EGRESS_DENY_PORTS"] == "2379"
