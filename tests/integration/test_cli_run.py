"""``kopfscale run`` as users start it: a process, its namespace scope and its liveness endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest

from kopfscale_devcluster.cluster import free_port
from tests.conftest import Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture()
def other_namespace(cluster: Cluster, namespace: str) -> Iterator[str]:
    name = f"{namespace[:50]}-other"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def greeter(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "kopfscale.dev/v1",
            "kind": "Greeter",
            "metadata": {"name": name},
            "spec": {"message": "hi"},
        }
    )


def test_run_watches_only_its_namespaces_and_answers_liveness(
    cluster: Cluster, namespace: str, other_namespace: str
) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "kopfscale.cli", "run", "--standalone", "--namespace", namespace,
         "--liveness", f"http://127.0.0.1:{port}/healthz"],
        env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def live() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return bool(response.status == 200)

        wait_for(live, timeout=30, what="the kopf liveness endpoint")
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=greeter("watched"))
        cluster.kubectl("apply", "-n", other_namespace, "-f", "-", input=greeter("ignored"))
        wait_for(
            lambda: (
                cluster.kubectl("get", "deployment", "watched", "-n", namespace, check=False).returncode == 0
            ),
            timeout=30,
            what="the Deployment of the Greeter in the watched namespace",
        )
        assert process.poll() is None, "the operator exited"
        ignored = cluster.kubectl("get", "deployment", "ignored", "-n", other_namespace, check=False)
        assert ignored.returncode != 0, "a Greeter outside --namespace was reconciled"
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


def test_run_refuses_both_namespace_and_all_namespaces() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kopfscale.cli", "run", "-A", "-n", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "either --namespace or --all-namespaces" in result.stderr
