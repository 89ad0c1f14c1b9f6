"""``make run`` as a developer starts it: it says where it runs, uses peering like the chart,
serves /metrics and liveness on loopback only, and logs at INFO with each line naming its object.

The test runs the real target with ``CLUSTER=current`` pointed at the test's control plane (the
default, ``CLUSTER=local``, starts the repository's own ``.cluster/``, which a test must not do),
scoped to the test's namespace so it touches nothing else."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kopfscale_devcluster.binaries import REPO_ROOT
from kopfscale_devcluster.cluster import free_port
from tests.conftest import Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def make(*args: str, env: dict[str, str], **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), *args],
        env=env, text=True, start_new_session=True, **kwargs,  # type: ignore[call-overload]
    )  # fmt: skip


@pytest.fixture()
def make_run(cluster: Cluster, namespace: str, tmp_path: Path) -> Iterator[tuple[Path, int, int]]:
    metrics, health = free_port(), free_port()
    log = tmp_path / "run.log"
    # Peering per watched namespace, as the namespaced manifests and the chart create it.
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "kopfscale"}}
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "deploy" / "crds" / "kopf-peering.yaml"))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(peering))
    with log.open("w") as out:
        process = make(
            "run", "CLUSTER=current", f"SCOPE=--namespace={namespace}",
            f"RUN_METRICS_PORT={metrics}", f"RUN_HEALTH_PORT={health}",
            env=cluster.env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield log, metrics, health
            assert process.poll() is None, log.read_text()
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status, response.read().decode()


def test_make_run_says_where_serves_on_loopback_and_names_objects(
    cluster: Cluster, namespace: str, make_run: tuple[Path, int, int]
) -> None:
    log, metrics, health = make_run
    wait_for(lambda: get(f"http://127.0.0.1:{health}/healthz")[0] == 200, timeout=60, what="liveness")
    status, text = get(f"http://127.0.0.1:{metrics}/metrics")
    assert status == 200 and "kopfscale_reconciles" in text
    # Bound to 127.0.0.1 only: the rest of the loopback network is refused.
    for port in (metrics, health):
        with pytest.raises(urllib.error.URLError):
            get(f"http://127.0.0.2:{port}/metrics")

    body = {"apiVersion": "kopfscale.dev/v1", "kind": "Greeter", "metadata": {"name": "hello"},
            "spec": {"message": "Hello"}}  # fmt: skip
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    wait_for(
        lambda: f"[{namespace}/hello]" in log.read_text(), timeout=30, what="a log line naming the Greeter"
    )

    lines = log.read_text().splitlines()
    summary = [line for line in lines if line.startswith("kopfscale: cluster ")]
    assert len(summary) == 1, lines
    server = cluster.kubectl(
        "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
    ).stdout
    assert f"({server})" in summary[0]
    assert f"scope namespaces {namespace}" in summary[0]
    assert "peering kopfscale (priority 0)" in summary[0]
    assert f"metrics http://127.0.0.1:{metrics}/metrics" in summary[0]
    assert f"liveness http://127.0.0.1:{health}/healthz" in summary[0]
    # INFO, not kopf's debug: no raw HTTP traffic, no errors on the way.
    assert not [line for line in lines if "[DEBUG" in line or "[ERROR" in line], lines
    own = [line for line in lines if "kopf.objects" in line]
    assert own and all(f"[{namespace}/" in line for line in own), own


def test_make_run_refuses_an_unknown_cluster_choice(cluster: Cluster) -> None:
    process = make("run", "CLUSTER=staging", env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "CLUSTER must be local (default) or current, not 'staging'" in err


def test_make_run_current_demands_a_reachable_cluster(cluster: Cluster, tmp_path: Path) -> None:
    env = {**cluster.env, "KUBECONFIG": str(tmp_path / "none")}
    process = make("run", "CLUSTER=current", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "the current kubeconfig reaches no cluster" in err
