"""`kubectl apply` then `kubectl delete` of the real plain manifests (deploy/kubernetes/, deploy/namespaced/).

kwok simulates the operator's Pod (it becomes Running without running the image): what is
proven here is that the manifests are accepted, every object appears, the RBAC binds what it
should (and not more), and `kubectl delete` leaves nothing behind. The operator itself running
with exactly these permissions is tests/integration/test_rbac_operator.py.
"""

from __future__ import annotations

import json

import pytest

from kopfscale_devcluster.binaries import REPO_ROOT

from ..conftest import Cluster
from ..helpers import wait_for

pytestmark = pytest.mark.integration

CLUSTERWIDE = str(REPO_ROOT / "deploy" / "kubernetes")
NAMESPACED = str(REPO_ROOT / "deploy" / "namespaced")
PEERING_CRDS = str(REPO_ROOT / "deploy" / "crds")
CRDS = str(REPO_ROOT / "crds")
SYSTEM_NS = "kopfscale-system"
SA = f"system:serviceaccount:{SYSTEM_NS}:kopfscale"


def can_i(cluster: Cluster, as_user: str, verb: str, resource: str, *where: str) -> bool:
    result = cluster.kubectl("auth", "can-i", verb, resource, f"--as={as_user}", *where, check=False)
    return result.stdout.strip() == "yes"


def deployment_available(cluster: Cluster, namespace: str, name: str) -> bool:
    out = cluster.kubectl("get", "deployment", name, "-n", namespace, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    status = json.loads(out.stdout).get("status") or {}
    return bool(status.get("availableReplicas") == 1)


def gone(cluster: Cluster, *args: str) -> bool:
    out = cluster.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
    return out.returncode == 0 and not out.stdout.strip()


def test_kubectl_apply_then_delete_clusterwide(cluster: Cluster) -> None:
    # The documented one-liner (the CRDs are already there from the session: apply is idempotent).
    cluster.kubectl("apply", "-f", CRDS, "-f", PEERING_CRDS, "-f", CLUSTERWIDE, timeout=120)
    try:
        for kind in ("serviceaccount", "deployment"):
            cluster.kubectl("get", kind, "kopfscale", "-n", SYSTEM_NS)
        cluster.kubectl("get", "service", "kopfscale-metrics", "-n", SYSTEM_NS)
        cluster.kubectl("get", "clusterrole,clusterrolebinding", "kopfscale")
        labels = json.loads(cluster.kubectl("get", "namespace", SYSTEM_NS, "-o", "json").stdout)["metadata"][
            "labels"
        ]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        # The restricted Pod Security Standard is enforced there, and the operator's Pod passes it.
        wait_for(
            lambda: deployment_available(cluster, SYSTEM_NS, "kopfscale"), timeout=60, what="the operator Pod"
        )

        # The ClusterRoleBinding gives the ServiceAccount what the operator needs, everywhere ...
        assert can_i(cluster, SA, "watch", "greeters.kopfscale.dev", "-A")
        assert can_i(cluster, SA, "patch", "deployments.apps", "--subresource=scale", "-n", "default")
        assert can_i(cluster, SA, "create", "services", "-n", "default")
        assert can_i(cluster, SA, "patch", "clusterkopfpeerings.kopf.dev")
        assert can_i(cluster, SA, "list", "pods", "-n", "default")
        # ... and nothing else.
        assert not can_i(cluster, SA, "get", "secrets", "-n", SYSTEM_NS)
        assert not can_i(cluster, SA, "delete", "deployments.apps", "-n", "default")
        assert not can_i(cluster, SA, "create", "pods", "-n", "default")
        assert not can_i(cluster, SA, "patch", "daemonsets.apps", "-n", "default")
    finally:
        # Everything but the CRDs (the rest of the session uses them; deleting them is plain kubectl).
        cluster.kubectl("delete", "-f", CLUSTERWIDE, "--ignore-not-found", "--wait=true", timeout=120)
    for args in (
        ("clusterrole", "kopfscale"),
        ("clusterrolebinding", "kopfscale"),
        ("namespace", SYSTEM_NS),
    ):
        wait_for(lambda args=args: gone(cluster, *args), timeout=60, what=f"{' '.join(args)} to be gone")
    assert gone(cluster, "clusterrole,clusterrolebinding", "-l", "app.kubernetes.io/part-of=kopfscale")


def test_kubectl_apply_then_delete_namespaced(cluster: Cluster, namespace: str) -> None:
    """A namespace admin installs the operator for their namespace only (CRDs installed by an admin)."""
    cluster.kubectl("apply", "-f", CRDS, "-f", PEERING_CRDS)
    cluster.kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=30s")
    cluster.kubectl("apply", "-n", namespace, "-f", NAMESPACED)
    sa = f"system:serviceaccount:{namespace}:kopfscale"
    try:
        for kind in ("serviceaccount", "role", "rolebinding", "deployment", "kopfpeering"):
            cluster.kubectl("get", kind, "kopfscale", "-n", namespace)
        wait_for(
            lambda: deployment_available(cluster, namespace, "kopfscale"), timeout=60, what="the operator Pod"
        )
        env = json.loads(
            cluster.kubectl("get", "deployment", "kopfscale", "-n", namespace, "-o", "json").stdout
        )
        container = env["spec"]["template"]["spec"]["containers"][0]
        assert "--all-namespaces" not in container["args"]
        assert any(e["name"] == "KOPFSCALE_NAMESPACES" for e in container["env"])
        assert can_i(cluster, sa, "patch", "scaledapps.kopfscale.dev", "-n", namespace)
        assert not can_i(
            cluster, sa, "patch", "greeters.kopfscale.dev", "-n", namespace
        )  # nothing to write there
        assert can_i(cluster, sa, "patch", "kopfpeerings.kopf.dev", "-n", namespace)
        assert not can_i(cluster, sa, "patch", "scaledapps.kopfscale.dev", "-n", "default")
        assert not can_i(cluster, sa, "list", "namespaces")
        assert not can_i(cluster, sa, "get", "secrets", "-n", namespace)
    finally:
        cluster.kubectl(
            "delete", "-n", namespace, "-f", NAMESPACED, "--ignore-not-found", "--wait=true", timeout=120
        )
    wait_for(
        lambda: gone(
            cluster,
            "all,serviceaccount,role,rolebinding,kopfpeering",
            "-n",
            namespace,
            "-l",
            "app.kubernetes.io/part-of=kopfscale",
        ),
        timeout=60,
        what="the namespaced install to be gone",
    )
