"""The local control plane's fault tooling itself: stop and restart one component, freeze and thaw
it, and blackhole the connections of a proxy in front of the apiserver (for the fault tests).

Runs on a control plane of its own (``isolated_cluster``): these tests break it on purpose.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import signal

import pytest

from kopfscale_devcluster import LocalCluster
from kopfscale_devcluster.cluster import process_state
from tests.conftest import Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

OTHERS = ("etcd", "kube-controller-manager", "kube-scheduler", "kwok")


def readyz(local: LocalCluster, timeout: float, port: int | None = None) -> int:
    """``GET /readyz`` as the admin, on a fresh connection, with a client-side timeout."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", port or local.apiserver_port, context=local.ssl_context(), timeout=timeout
    )
    try:
        conn.request("GET", "/readyz")
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture()
def local(isolated_cluster: Cluster) -> LocalCluster:
    assert isolated_cluster.local is not None
    return isolated_cluster.local


def test_apiserver_stopped_and_started_again_keeps_the_rest_and_the_data(
    isolated_cluster: Cluster, local: LocalCluster
) -> None:
    isolated_cluster.kubectl("create", "configmap", "survivor", "-n", "default", "--from-literal=k=v")
    before = local.pids

    local.stop_component("kube-apiserver")
    with pytest.raises(ConnectionRefusedError):
        readyz(local, timeout=5)
    local.check_alive()  # a deliberate stop is not a failure
    for name in OTHERS:
        assert local.component(name).popen.poll() is None, f"{name} died with the apiserver"
        assert local.pids[name] == before[name]

    local.start_component("kube-apiserver")
    assert readyz(local, timeout=5) == 200
    assert local.pids["kube-apiserver"] != before["kube-apiserver"]
    survivor = ("get", "configmap", "survivor", "-n", "default", "-o", "jsonpath={.data.k}")
    assert isolated_cluster.kubectl(*survivor).stdout == "v"

    local.restart_component("kube-apiserver", kill=True)  # SIGKILL, then the same command line
    assert readyz(local, timeout=5) == 200
    local.check_alive()


def test_a_component_that_exits_unasked_is_still_a_failure_and_can_be_started(
    isolated_cluster: Cluster, local: LocalCluster
) -> None:
    kwok = local.component("kwok").popen
    os.kill(kwok.pid, signal.SIGKILL)
    wait_for(lambda: kwok.poll() is not None, timeout=10, what="kwok to exit")
    with pytest.raises(RuntimeError, match="kwok exited with code -9"):
        local.check_alive()

    local.start_component("kwok")
    local.check_alive()
    isolated_cluster.kubectl("run", "after-kwok-restart", "-n", "default", "--image=registry.invalid/x:1")

    def running() -> bool:
        phase = isolated_cluster.kubectl(
            "get", "pod", "after-kwok-restart", "-n", "default", "-o", "jsonpath={.status.phase}"
        )
        return phase.stdout == "Running"

    wait_for(running, timeout=60, what="the restarted kwok to run a new Pod")


def test_a_frozen_apiserver_hangs_requests_until_thawed(local: LocalCluster) -> None:
    pid = local.pids["kube-apiserver"]
    local.freeze("kube-apiserver")
    try:
        assert process_state(pid) == "T"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            patient = pool.submit(readyz, local, 60)
            with pytest.raises(TimeoutError):
                readyz(local, timeout=2)
            assert not patient.done(), "a request to a frozen apiserver was answered"
            local.check_alive()  # frozen is alive
            local.thaw("kube-apiserver")
            assert patient.result(timeout=30) == 200
    finally:
        local.thaw("kube-apiserver")
    assert process_state(pid) != "T"
    assert readyz(local, timeout=5) == 200


def test_blackhole_proxy_times_clients_out_keeps_connections_open_and_heals(
    isolated_cluster: Cluster, local: LocalCluster
) -> None:
    proxy = local.proxy()
    assert proxy.kubeconfig is not None
    via_proxy = ("--kubeconfig", str(proxy.kubeconfig), "--request-timeout=3s")
    assert isolated_cluster.kubectl(*via_proxy, "get", "namespace", "default", "-o", "name").stdout == (
        "namespace/default\n"
    )
    established = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=local.ssl_context(), timeout=5)
    established.request("GET", "/readyz")
    assert established.getresponse().read() == b"ok"

    proxy.blackhole()
    try:
        established.request("GET", "/readyz")
        with pytest.raises(TimeoutError):  # a timeout, not a reset: the connection is half-open
            established.getresponse()
        assert proxy.open_connections >= 1
        refused = isolated_cluster.kubectl(*via_proxy, "get", "namespace", "default", check=False)
        assert refused.returncode != 0
        assert readyz(local, timeout=5) == 200  # the apiserver itself is fine
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            patient = pool.submit(readyz, local, 60, proxy.port)
            with pytest.raises(TimeoutError):
                readyz(local, 2, proxy.port)
            assert not patient.done()
            proxy.unblock()
            assert patient.result(timeout=30) == 200  # what waited goes through once healed
    finally:
        proxy.unblock()
        established.close()
    assert isolated_cluster.kubectl(*via_proxy, "get", "namespace", "default", "-o", "name").returncode == 0
    proxy.close()
