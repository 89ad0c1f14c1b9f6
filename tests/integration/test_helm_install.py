"""`helm install` then `helm uninstall` of the chart on the local control plane.

Objects appear, the RBAC binds the ServiceAccount, the (kwok-simulated) operator Pod becomes
available, and after `helm uninstall` nothing is left but the CRDs, which Helm keeps.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from kopfscale_devcluster.binaries import REPO_ROOT

from ..conftest import Cluster
from ..helpers import wait_for

pytestmark = pytest.mark.integration

CHART = str(REPO_ROOT / "deploy" / "helm" / "kopfscale")


def helm(cluster: Cluster, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["helm", *args], env=cluster.env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def names(cluster: Cluster, kinds: str, *where: str) -> set[str]:
    out = cluster.kubectl("get", kinds, *where, "-o", "name", "--ignore-not-found")
    return set(out.stdout.split())


def can_i(cluster: Cluster, user: str, verb: str, resource: str, *where: str) -> bool:
    out = cluster.kubectl("auth", "can-i", verb, resource, f"--as={user}", *where, check=False)
    return out.stdout.strip() == "yes"


def test_helm_install_then_uninstall_clusterwide(cluster: Cluster, namespace: str) -> None:
    release = f"ks-{uuid.uuid4().hex[:6]}"
    full = f"{release}-kopfscale"
    selector = f"app.kubernetes.io/instance={release}"
    crds_before = names(cluster, "crd")
    installed = helm(
        cluster,
        "install",
        release,
        CHART,
        "-n",
        namespace,
        "--set",
        f"peering.name={release}",
        "--wait",
        "--timeout",
        "60s",
    )
    assert "kopfscale" in installed.stdout  # NOTES.txt
    try:
        assert names(cluster, "deployment,service,serviceaccount", "-n", namespace, "-l", selector) == {
            f"deployment.apps/{full}",
            f"service/{full}-metrics",
            f"serviceaccount/{full}",
        }
        assert names(cluster, "clusterrole,clusterrolebinding", "-l", selector) == {
            f"clusterrole.rbac.authorization.k8s.io/{full}",
            f"clusterrolebinding.rbac.authorization.k8s.io/{full}",
        }
        cluster.kubectl("get", "clusterkopfpeering", release)
        deployment = json.loads(
            cluster.kubectl("get", "deployment", full, "-n", namespace, "-o", "json").stdout
        )
        assert deployment["status"].get("availableReplicas") == 1
        sa = f"system:serviceaccount:{namespace}:{full}"
        assert can_i(
            cluster, sa, "patch", "scaledapps.kopfscale.dev", "--subresource=status", "-n", "default"
        )
        assert can_i(cluster, sa, "create", "events", "-n", "default")
        assert not can_i(cluster, sa, "list", "secrets", "-A")
        # The chart's CRDs (crds/ and kopf's peering CRDs) are all there.
        assert {
            "customresourcedefinition.apiextensions.k8s.io/greeters.kopfscale.dev",
            "customresourcedefinition.apiextensions.k8s.io/scaledapps.kopfscale.dev",
            "customresourcedefinition.apiextensions.k8s.io/clusterkopfpeerings.kopf.dev",
            "customresourcedefinition.apiextensions.k8s.io/kopfpeerings.kopf.dev",
        } <= names(cluster, "crd")
    finally:
        helm(cluster, "uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")

    def nothing_left() -> bool:
        return not (
            names(cluster, "all,serviceaccount,role,rolebinding", "-n", namespace, "-l", selector)
            | names(cluster, "clusterrole,clusterrolebinding", "-l", selector)
            | names(cluster, "clusterkopfpeering", "-l", selector)
        )

    wait_for(nothing_left, timeout=60, what=f"everything of release {release} to be gone")
    # Helm keeps CRDs on uninstall: the ones it found, and kopf's peering CRDs it installed.
    assert crds_before <= names(cluster, "crd")


def test_helm_install_then_uninstall_watching_a_namespace_list(cluster: Cluster, namespace: str) -> None:
    release = f"ks-{uuid.uuid4().hex[:6]}"
    full = f"{release}-kopfscale"
    selector = f"app.kubernetes.io/instance={release}"
    watched = f"{namespace}-w"
    cluster.kubectl("create", "namespace", watched)
    try:
        helm(
            cluster,
            "install",
            release,
            CHART,
            "-n",
            namespace,
            "--set",
            f"watchNamespaces={{{watched}}}",
            "--set",
            "logFormat=plain",
            "--wait",
            "--timeout",
            "60s",
        )
        try:
            # No cluster-wide rights: a Role, a RoleBinding and a KopfPeering in the watched namespace.
            assert not names(cluster, "clusterrole,clusterrolebinding", "-l", selector)
            assert names(cluster, "role,rolebinding,kopfpeering", "-n", watched, "-l", selector) == {
                f"role.rbac.authorization.k8s.io/{full}",
                f"rolebinding.rbac.authorization.k8s.io/{full}",
                "kopfpeering.kopf.dev/kopfscale",
            }
            args = json.loads(
                cluster.kubectl("get", "deployment", full, "-n", namespace, "-o", "json").stdout
            )["spec"]["template"]["spec"]["containers"][0]["args"]
            assert f"--namespace={watched}" in args and "--log-format=plain" in args
            sa = f"system:serviceaccount:{namespace}:{full}"
            assert can_i(cluster, sa, "create", "deployments.apps", "-n", watched)
            assert not can_i(cluster, sa, "create", "deployments.apps", "-n", namespace)
        finally:
            helm(cluster, "uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")
        wait_for(
            lambda: (
                not names(cluster, "all,role,rolebinding,kopfpeering", "-n", watched, "-l", selector)
                and not names(cluster, "all,serviceaccount", "-n", namespace, "-l", selector)
            ),
            timeout=60,
            what=f"everything of release {release} to be gone",
        )
    finally:
        cluster.kubectl("delete", "namespace", watched, "--wait=false", check=False)
