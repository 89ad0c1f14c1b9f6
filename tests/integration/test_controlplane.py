"""Smoke tests proving the local control plane is a real Kubernetes, not a stand-in."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: smoke}
spec:
  replicas: 2
  selector: {matchLabels: {app: smoke}}
  template:
    metadata: {labels: {app: smoke}}
    spec:
      containers: [{name: app, image: registry.invalid/smoke:1}]
"""


def _server(cluster: Cluster) -> tuple[str, ssl.SSLContext]:
    config = json.loads(cluster.kubectl("config", "view", "--raw", "-o", "json").stdout)
    server = config["clusters"][0]["cluster"]["server"]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return server, context


def _get(url: str, context: ssl.SSLContext, token: str | None = None, method: str = "GET") -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}' if method == "POST" else None
    request = urllib.request.Request(
        url, headers={**headers, "Content-Type": "application/json"}, method=method, data=body
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_deployment_gets_replicaset_and_ready_pods_then_gc(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT)

    def ready_replicas() -> bool:
        out = cluster.kubectl(
            "get", "deploy", "smoke", "-n", namespace, "-o", "jsonpath={.status.readyReplicas}"
        )
        return out.stdout == "2"

    wait_for(ready_replicas, timeout=60, what="2 ready replicas (kwok runs the Pods)")
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", "app=smoke", "-o", "json").stdout)
    assert [p["status"]["phase"] for p in pods["items"]] == ["Running", "Running"]
    replicasets = cluster.kubectl(
        "get", "rs", "-n", namespace, "-l", "app=smoke", "-o", "name"
    ).stdout.split()
    assert len(replicasets) == 1

    cluster.kubectl("delete", "deploy", "smoke", "-n", namespace, "--wait=false")
    wait_for(
        lambda: (
            cluster.kubectl("get", "rs,pods", "-n", namespace, "-l", "app=smoke", "-o", "name").stdout == ""
        ),
        timeout=60,
        what="garbage collection of the ReplicaSet and its Pods",
    )


def test_request_without_credentials_is_refused(cluster: Cluster) -> None:
    server, context = _server(cluster)
    assert _get(f"{server}/api/v1/namespaces", context) == 401
    assert _get(f"{server}/api/v1/secrets", context) == 401


def test_service_account_token_can_do_what_its_role_allows_and_nothing_more(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.kubectl(
        "create", "role", "cm-reader", "-n", namespace, "--verb=get,list", "--resource=configmaps"
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "reader",
        "-n",
        namespace,
        "--role=cm-reader",
        f"--serviceaccount={namespace}:reader",
    )
    token = cluster.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    server, context = _server(cluster)
    base = f"{server}/api/v1/namespaces/{namespace}"
    assert _get(f"{base}/configmaps", context, token) == 200
    assert _get(f"{base}/secrets", context, token) == 403
    assert _get(f"{base}/configmaps", context, token, method="POST") == 403
    assert _get(f"{server}/api/v1/namespaces/default/configmaps", context, token) == 403


def test_a_killed_parent_leaves_no_control_plane_process_behind(tmp_path: object) -> None:
    """SIGKILL the process that started a cluster: every control-plane process must die too."""
    script = textwrap.dedent(
        """
        import json, sys, time
        from kopfscale_devcluster import LocalCluster
        cluster = LocalCluster().start()
        print(json.dumps(cluster.pids), flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids: dict[str, int] = json.loads(parent.stdout.readline())
        assert set(pids) >= {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
        for pid in pids.values():
            os.kill(pid, 0)  # all alive
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    def all_gone() -> bool:
        alive = []
        for pid in pids.values():
            try:
                os.kill(pid, 0)
                with open(f"/proc/{pid}/stat") as stat:
                    if stat.read().split()[2] != "Z":
                        alive.append(pid)
            except (ProcessLookupError, FileNotFoundError):
                pass
        return not alive

    deadline = time.monotonic() + 15
    while not all_gone() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all_gone(), f"orphans left behind: {pids}"
