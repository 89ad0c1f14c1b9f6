"""`helm install` beside a ClusterKopfPeering that an operator created (``make run``, the plain
manifests): Helm used to refuse ("cannot be imported into the current release"); the chart now
leaves a peering object that is not its own alone, and the operator only needs it to exist."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from kopfscale_devcluster.binaries import REPO_ROOT

from ..conftest import Cluster

pytestmark = pytest.mark.integration

CHART = str(REPO_ROOT / "deploy" / "helm" / "kopfscale")


def helm(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["helm", *args], env=cluster.env, capture_output=True, text=True, timeout=120, check=False
    )


def test_helm_install_beside_an_operator_made_peering_object(cluster: Cluster, namespace: str) -> None:
    name = f"pe-{uuid.uuid4().hex[:6]}"
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": name}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(peering))  # as kopfscale.peering creates it
    try:
        installed = helm(cluster, "install", name, CHART, "-n", namespace, "--set", f"peering.name={name}")
        assert installed.returncode == 0, installed.stderr
        live = json.loads(cluster.kubectl("get", "clusterkopfpeering", name, "-o", "json").stdout)
        assert "meta.helm.sh/release-name" not in (live["metadata"].get("annotations") or {})
        upgraded = helm(cluster, "upgrade", name, CHART, "-n", namespace, "--set", f"peering.name={name}")
        assert upgraded.returncode == 0, upgraded.stderr
        assert helm(cluster, "uninstall", name, "-n", namespace, "--wait").returncode == 0
        cluster.kubectl("get", "clusterkopfpeering", name)  # not the release's: it stays
    finally:
        cluster.kubectl("delete", "clusterkopfpeering", name, "--ignore-not-found")


def test_the_release_still_owns_a_peering_object_it_made(cluster: Cluster, namespace: str) -> None:
    name = f"pr-{uuid.uuid4().hex[:6]}"
    assert (
        helm(cluster, "install", name, CHART, "-n", namespace, "--set", f"peering.name={name}").returncode
        == 0
    )
    live = json.loads(cluster.kubectl("get", "clusterkopfpeering", name, "-o", "json").stdout)
    assert live["metadata"]["annotations"]["meta.helm.sh/release-name"] == name
    upgraded = helm(cluster, "upgrade", name, CHART, "-n", namespace, "--set", f"peering.name={name}")
    assert upgraded.returncode == 0, upgraded.stderr
    cluster.kubectl("get", "clusterkopfpeering", name)  # kept through the upgrade
    assert helm(cluster, "uninstall", name, "-n", namespace, "--wait").returncode == 0
    gone = cluster.kubectl("get", "clusterkopfpeering", name, "--ignore-not-found", "-o", "name")
    assert gone.stdout.strip() == ""
