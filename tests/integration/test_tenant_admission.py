"""The author-rights admission policy against the real apiserver, as a user with only ScaledApp rights.

The user is a ServiceAccount (``author``) with a token from the TokenRequest API and a Role
granting every verb on ScaledApps and nothing else; each test grants it one more right at a
time and checks what is refused (and that the refusal names the missing right) and what is
admitted. The policy is the one in deploy/admission/, renamed and bound to the test's namespace
only, so no other test sees it.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kopfscale_devcluster.binaries import REPO_ROOT

from ..conftest import Cluster
from ..helpers import wait_for

pytestmark = pytest.mark.integration

POLICY_FILE = REPO_ROOT / "deploy" / "admission" / "kopfscale-admission.yaml"


@dataclass
class Author:
    """kubectl as the ScaledApp author (token only: no client certificate of the admin)."""

    cluster: Cluster
    namespace: str
    kubeconfig: Path
    user: str

    def apply(self, obj: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-n", self.namespace, *extra, "-f", "-", input=json.dumps(obj))

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            env=self.cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def grant(self, name: str, rules: list[dict[str, Any]]) -> None:
        """One more Role bound to the author (the admin does this, as a namespace admin would)."""
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name},
            "rules": rules,
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "author", "namespace": self.namespace}],
        }
        for obj in (role, binding):
            self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(obj))
        # RBAC is read from the informer cache: wait until the apiserver's authorizer sees it.
        rule = rules[0]
        resource = rule["resources"][0]
        group = rule["apiGroups"][0]
        sub = resource.split("/", 1)
        target = sub[0] + (f".{group}" if group else "")
        args = ["auth", "can-i", rule["verbs"][0], target, "-n", self.namespace]
        if len(sub) > 1:
            args.append(f"--subresource={sub[1]}")
        if rule.get("resourceNames"):
            args[3] = f"{target}/{rule['resourceNames'][0]}"
        wait_for(lambda: self.kubectl(*args).stdout.strip() == "yes", timeout=15, what=f"the grant {name}")


def token_kubeconfig(cluster: Cluster, namespace: str, serviceaccount: str, path: Path) -> Path:
    token = cluster.kubectl(
        "create", "token", serviceaccount, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": serviceaccount, "user": {"token": token}}],
        "contexts": [{"name": "author", "context": {"cluster": "local", "user": serviceaccount}}],
        "current-context": "author",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture()
def policy(cluster: Cluster, namespace: str) -> Iterator[str]:
    """deploy/admission/'s policy under a unique name, bound to this test's namespace only."""
    name = f"author-rights-{uuid.uuid4().hex[:6]}"
    docs = [d for d in yaml.safe_load_all(POLICY_FILE.read_text()) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    for doc in docs:
        doc["metadata"]["name"] = name
        if doc["kind"] == "ValidatingAdmissionPolicyBinding":
            doc["spec"]["policyName"] = name
            doc["spec"]["matchResources"] = {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            }
    text = yaml.safe_dump_all(docs)
    cluster.kubectl("apply", "-f", "-", input=text)
    try:
        got = json.loads(cluster.kubectl("get", "validatingadmissionpolicy", name, "-o", "json").stdout)
        assert not got.get("status", {}).get("typeChecking", {}).get("expressionWarnings"), got["status"]
        yield name
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=text, check=False)


@pytest.fixture()
def author(cluster: Cluster, namespace: str, policy: str, tmp_path: Path) -> Author:
    cluster.kubectl("create", "serviceaccount", "author", "-n", namespace)
    handle = Author(
        cluster,
        namespace,
        token_kubeconfig(cluster, namespace, "author", tmp_path / "author.kubeconfig"),
        f"system:serviceaccount:{namespace}:author",
    )
    handle.grant(
        "scaledapps-only", [{"apiGroups": ["kopfscale.dev"], "resources": ["scaledapps"], "verbs": ["*"]}]
    )
    # The policy starts being enforced a moment after it is created: wait until it refuses.
    wait_for(
        lambda: (
            "may not create deployments.apps"
            in handle.apply(with_template("probe"), "--dry-run=server").stderr
        ),
        timeout=30,
        what="the admission policy to be enforced",
    )
    return handle


def metric(**http: Any) -> dict[str, Any]:
    return {
        "name": "load",
        "type": "http",
        "http": {"url": "http://127.0.0.1:9/stats", "valueLocation": "$.load", **http},
        "target": {"type": "AverageValue", "value": 10},
    }


def scaledapp(name: str, *metrics: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "ScaledApp",
        "metadata": {"name": name},
        "spec": {"minReplicas": 1, "maxReplicas": 3, "metrics": list(metrics) or [metric()], **spec},
    }


def with_template(name: str, *metrics: dict[str, Any]) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"app": name}},
        "spec": {
            "hostNetwork": True,
            "containers": [
                {"name": "app", "image": "registry.invalid/app:1", "securityContext": {"privileged": True}}
            ],
        },
    }
    return scaledapp(name, *metrics, template=template)


def with_target(
    name: str,
    *metrics: dict[str, Any],
    kind: str = "Deployment",
    api_version: str = "apps/v1",
    target: str = "web",
) -> dict[str, Any]:
    return scaledapp(name, *metrics, scaleTargetRef={"apiVersion": api_version, "kind": kind, "name": target})


def secret_ref(name: str, key: str = "token") -> dict[str, Any]:
    return {"secretKeyRef": {"name": name, "key": key}}


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode != 0, f"admitted:\n{result.stdout}"
    assert "denied request" in result.stderr or "Forbidden" in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


def admitted(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr


def test_a_template_needs_the_right_to_create_deployments(author: Author) -> None:
    message = refused(
        author.apply(with_template("app")),
        f"{author.user} may not create deployments.apps in namespace {author.namespace}",
        "missing right: create deployments.apps",
    )
    assert "spec.template makes kopfscale create a Deployment" in message
    assert author.kubectl("get", "scaledapp", "app", "-n", author.namespace).returncode != 0
    author.grant("deployments", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]}])
    admitted(author.apply(with_template("app")))


def test_a_scale_target_needs_the_right_to_update_its_scale(author: Author) -> None:
    refused(
        author.apply(with_target("t")),
        "spec.scaleTargetRef makes kopfscale scale Deployment/web",
        "missing right: update deployments.apps/scale",
    )
    refused(
        author.apply(with_target("g", kind="Greeter", api_version="kopfscale.dev/v1")),
        "update greeters.kopfscale.dev/scale",
    )
    refused(author.apply(with_target("s", kind="StatefulSet")), "update statefulsets.apps/scale")
    author.grant(
        "scale-web",
        [
            {
                "apiGroups": ["apps"],
                "resources": ["deployments/scale"],
                "resourceNames": ["web"],
                "verbs": ["update"],
            }
        ],
    )
    admitted(author.apply(with_target("t")))
    refused(author.apply(with_target("other", target="db")), "Deployment/db", "update deployments.apps/scale")
    # Retargeting an admitted ScaledApp is an UPDATE: checked the same way.
    refused(author.apply(with_target("t", target="db")), "Deployment/db")


def test_every_secret_reference_needs_the_right_to_get_that_secret(author: Author) -> None:
    cases = {
        "header": metric(headersFrom=[{"name": "X-Api-Key", "valueFrom": secret_ref("api-key")}]),
        "basic": metric(
            basicAuth={
                "username": {"value": "bot"},
                "password": {"valueFrom": secret_ref("api-key", "password")},
            }
        ),
        "bearer": metric(bearerToken={"valueFrom": secret_ref("api-key")}),
        "ca": metric(tls={"ca": {"valueFrom": secret_ref("api-key", "ca.crt")}}),
    }
    grant = [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["api-key"], "verbs": ["get"]}]
    author.grant(  # the target is allowed: only the Secrets are in question
        "scale-web",
        [
            {
                "apiGroups": ["apps"],
                "resources": ["deployments/scale"],
                "resourceNames": ["web"],
                "verbs": ["update"],
            }
        ],
    )
    for name, m in cases.items():
        refused(
            author.apply(with_target(name, m)),
            f"{author.user} may not get secret api-key in namespace {author.namespace}",
            "missing right: get secrets",
        )
    author.grant("get-api-key", grant)
    for name, m in cases.items():
        admitted(author.apply(with_target(name, m)))
    # Two Secrets, one not granted: the refusal names exactly that one.
    two = metric(
        headersFrom=[
            {"name": "X-Api-Key", "valueFrom": secret_ref("api-key")},
            {"name": "X-Other", "valueFrom": secret_ref("db-password")},
        ]
    )
    message = refused(author.apply(with_target("two", two)))
    assert "may not get secret db-password in" in message and "api-key" not in message.split("may not get")[1]
    # Clear header values need no Secret right.
    admitted(author.apply(with_target("clear", metric(headers={"X-Team": "a"}))))


def test_updates_are_checked_for_what_they_change(cluster: Cluster, author: Author) -> None:
    # The admin (all rights) creates a ScaledApp with a template and one with a scale target.
    for obj in (with_template("admins"), with_target("admins-target")):
        cluster.kubectl("apply", "-n", author.namespace, "-f", "-", input=json.dumps(obj))
    # The author may change what needs no extra right (the metric, the bounds) ...
    changed = with_template("admins")
    changed["spec"]["maxReplicas"] = 5
    admitted(author.apply(changed))
    patch = json.dumps({"spec": {"maxReplicas": 4}})
    admitted(
        author.kubectl(
            "patch", "scaledapp", "admins-target", "-n", author.namespace, "--type=merge", "-p", patch
        )
    )
    # ... and metadata (what kopf patches: annotations, finalizers) ...
    admitted(author.kubectl("annotate", "scaledapp", "admins-target", "-n", author.namespace, "team=a"))
    # ... but not the template, the target, or a new Secret reference.
    changed["spec"]["template"]["spec"]["serviceAccountName"] = "powerful"
    refused(author.apply(changed), "may not create deployments.apps")
    retarget = json.dumps(
        {"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "db"}}}
    )
    refused(
        author.kubectl(
            "patch", "scaledapp", "admins-target", "-n", author.namespace, "--type=merge", "-p", retarget
        ),
        "update deployments.apps/scale",
    )
    add_secret = with_target("admins-target")
    add_secret["spec"]["metrics"] = [metric(bearerToken={"valueFrom": secret_ref("admin-token")})]
    refused(author.apply(add_secret), "may not get secret admin-token")
