"""Upgrading from the previous release: its chart, CRDs and operator (from git history) run with
Greeters and ScaledApps; then the documented path (docs/deploy.md, "Upgrading"): stop nothing by
hand, server-side apply the new CRDs, `helm upgrade` to the working tree's chart, and the new
operator takes over. The upgrade causes no write to any child, and every object stays Ready.

kwok only simulates the chart's operator Pod (no image runs here), so each version's operator
runs as a local process from its own source, scoped to the test's namespace: the old one from
``git archive`` of the release, the new one from the working tree.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kopfscale_devcluster.binaries import REPO_ROOT
from kopfscale_devcluster.cluster import free_port
from tests.conftest import CRDS_DIR, Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

#: The previous release: the commit whose chart, CRDs and operator users run today.
PREVIOUS = "c0947f4"
NEW_CHART = REPO_ROOT / "deploy" / "helm" / "kopfscale"


def previous_release(tmp_path: Path) -> Path:
    """The previous release's crds/, deploy/ and operator/ sources, from git history."""
    result = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", PREVIOUS, "crds", "deploy", "operator"],
        capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    if result.returncode != 0:  # demanded, never skipped
        pytest.fail(f"the previous release {PREVIOUS} is not in this clone's history (a shallow clone? "
                    f"git fetch --unshallow): {result.stderr.decode()}")  # fmt: skip
    archive = result.stdout
    root = tmp_path / "previous"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="tar")
    return root


def helm(cluster: Cluster, *args: str) -> str:
    result = subprocess.run(
        ["helm", *args], env=cluster.env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def apply_crds(cluster: Cluster, *dirs: Path) -> None:
    files = [a for d in dirs for f in sorted(d.glob("*.yaml")) for a in ("-f", str(f))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *files)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *files)


class Operator:
    """``kopfscale run`` from a given source tree, as a process of its own."""

    def __init__(self, cluster: Cluster, namespace: str, source: Path, log: Path) -> None:
        self.metrics = free_port()
        env = {**cluster.env, "PYTHONPATH": str(source), "KOPFSCALE_METRICS_PORT": str(self.metrics)}
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kopfscale.cli", "run", "--standalone", "--namespace", namespace],
                env=env, cwd=str(log.parent), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def scrape(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=2) as response:
            return str(response.read().decode())

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        assert self.process.wait(timeout=60) == 0, self.log.read_text()


def objects(namespace: str) -> list[dict[str, Any]]:
    def greeter(name: str, replicas: int) -> dict[str, Any]:
        return {"apiVersion": "kopfscale.dev/v1", "kind": "Greeter", "metadata": {"name": name},
                "spec": {"message": f"Hello from {name}", "replicas": replicas}}  # fmt: skip

    # Open all year: it opens every minute and closes only at the first minute of January 1st.
    window = {"timezone": "UTC", "start": "* * * * *", "end": "0 0 1 1 *", "desiredReplicas": 2}
    always = {"name": "always", "type": "cron", "cron": window}
    on_greeter = {
        "apiVersion": "kopfscale.dev/v1", "kind": "ScaledApp", "metadata": {"name": "scale-hello"},
        "spec": {"scaleTargetRef": {"apiVersion": "kopfscale.dev/v1", "kind": "Greeter", "name": "hello"},
                 "minReplicas": 1, "maxReplicas": 4, "pollingInterval": 2, "metrics": [always]},
    }  # fmt: skip
    owned = {
        "apiVersion": "kopfscale.dev/v1", "kind": "ScaledApp", "metadata": {"name": "web"},
        "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}},
                 "minReplicas": 1, "maxReplicas": 3, "pollingInterval": 2, "metrics": [always]},
    }  # fmt: skip
    return [greeter("hello", 1), greeter("plain", 1), on_greeter, owned]


def get(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out))


def ready(body: dict[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def all_ready(cluster: Cluster, namespace: str) -> bool:
    greeters = [get(cluster, namespace, "greeter", n) for n in ("hello", "plain")]
    scaledapps = [get(cluster, namespace, "scaledapp", n) for n in ("scale-hello", "web")]
    return (
        all(ready(b) for b in greeters + scaledapps)
        and greeters[0]["spec"]["replicas"] == 2  # the cron floor, applied through /scale
        and (greeters[0]["status"].get("readyReplicas") == 2)
        and scaledapps[1]["status"].get("replicas") == 2
    )


def children(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Every Deployment and Service a Greeter or ScaledApp owns, by kind/name, with its
    resourceVersion (the chart's own Deployment and Service change with the chart, as they should)."""
    out = cluster.kubectl("get", "deployments,services", "-n", namespace, "-o", "json").stdout
    items = [
        i for i in json.loads(out)["items"]
        if {o["kind"] for o in i["metadata"].get("ownerReferences") or []} & {"Greeter", "ScaledApp"}
    ]  # fmt: skip
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


@pytest.fixture()
def restore_crds(cluster: Cluster) -> Iterator[None]:
    yield
    apply_crds(cluster, CRDS_DIR, REPO_ROOT / "deploy" / "crds")  # the next tests get today's CRDs


def test_upgrade_from_the_previous_release_writes_no_child_and_keeps_everything_ready(
    cluster: Cluster, namespace: str, tmp_path: Path, restore_crds: None
) -> None:
    old = previous_release(tmp_path)
    release = f"up-{uuid.uuid4().hex[:6]}"
    common = [
        "-n",
        namespace,
        "--set",
        f"peering.name={release}",
        "--set",
        f"watchNamespaces={{{namespace}}}",
    ]

    # The previous release, installed as its docs said, with its operator running.
    apply_crds(cluster, old / "crds", old / "deploy" / "crds")
    helm(
        cluster,
        "install",
        release,
        str(old / "deploy" / "helm" / "kopfscale"),
        *common,
        "--wait",
        "--timeout",
        "60s",
    )
    previous = Operator(cluster, namespace, old / "operator", tmp_path / "previous.log")
    try:
        for body in objects(namespace):
            cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
        wait_for(
            lambda: all_ready(cluster, namespace),
            timeout=120,
            what="everything Ready on the previous release",
        )
        time.sleep(3)  # a few more rounds: the steady state the upgrade starts from
    finally:
        previous.stop()
    before = children(cluster, namespace)
    assert len(before) == 5, before  # hello, plain: Deployment + Service; web: Deployment

    # The upgrade path of docs/deploy.md: the CRDs first (Helm never upgrades crds/), then the chart.
    apply_crds(cluster, NEW_CHART / "crds")
    upgraded = helm(cluster, "upgrade", release, str(NEW_CHART), *common, "--wait", "--timeout", "60s")
    assert "symbolic link" not in upgraded
    new = Operator(cluster, namespace, REPO_ROOT / "operator", tmp_path / "new.log")
    try:

        def resumed() -> bool:
            text = new.scrape()
            rounds = [
                f'kopfscale_scaledapp_replicas{{namespace="{namespace}",scaledapp="{n}"}} 2.0'
                for n in ("scale-hello", "web")
            ]
            return all(r in text for r in rounds)

        wait_for(resumed, timeout=60, what="the new operator's first rounds of both ScaledApps")
        time.sleep(5)  # more rounds and every startup event (resume handlers, watches) processed
        assert all_ready(cluster, namespace)
        assert children(cluster, namespace) == before, "the upgrade wrote to a child"
    finally:
        new.stop()
    log = (tmp_path / "new.log").read_text()
    assert "[ERROR" not in log and "Traceback" not in log, log
    # Each process ran its own version (the previous release had no CRD wait at startup).
    assert "wait_for_established_crds" in log
    assert "wait_for_established_crds" not in (tmp_path / "previous.log").read_text()
    helm(cluster, "uninstall", release, "-n", namespace, "--wait")
