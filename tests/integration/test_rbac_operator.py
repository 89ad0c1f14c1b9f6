"""The chart's RBAC is enough for the operator, and a missing verb is reported, not hung on.

The operator runs as a local process (``python -m kopfscale.cli run``) with a kubeconfig that
holds only the token of the chart's ServiceAccount (``kubectl create token``), bound by the
chart to its ClusterRole (and, once, to its namespaced Role). The Greeter and ScaledApp
scenarios must pass with exactly those permissions: a Greeter gets its children and becomes
Ready; a ScaledApp scales its Deployment on an http metric; ``/metrics`` counts the reconciles.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kopfscale_devcluster.binaries import REPO_ROOT

from ..conftest import Cluster
from ..helpers import wait_for

pytestmark = pytest.mark.integration

CHART = str(REPO_ROOT / "deploy" / "helm" / "kopfscale")
#: What the chart's Deployment sets when it watches a namespace list (no cluster-level scanning).
NAMESPACED_ENV = {"KOPFSCALE_KOPF_SCANNING": "off"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def helm(cluster: Cluster, *args: str) -> None:
    result = subprocess.run(
        ["helm", *args], env=cluster.env, capture_output=True, text=True, timeout=90, check=False
    )
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


@contextlib.contextmanager
def chart_rbac(cluster: Cluster, namespace: str, *values: str) -> Iterator[str]:
    """Install the chart's ServiceAccount and RBAC (no operator Pod); yield the ServiceAccount's name."""
    release = f"rbac-{uuid.uuid4().hex[:6]}"
    helm(
        cluster,
        "install",
        release,
        CHART,
        "-n",
        namespace,
        "--set",
        "replicaCount=0",
        "--set",
        "metrics.service.enabled=false",
        "--set",
        f"peering.name={release}",
        *values,
    )
    try:
        yield f"{release}-kopfscale"
    finally:
        helm(cluster, "uninstall", release, "-n", namespace, "--wait", "--timeout", "60s")


def token_kubeconfig(cluster: Cluster, namespace: str, serviceaccount: str, path: Path) -> Path:
    token = cluster.kubectl(
        "create", "token", serviceaccount, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "--minify", "-o", "json").stdout)
    server = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": server}],
        "users": [{"name": serviceaccount, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": serviceaccount}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    return path


class Operator:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, metrics_port: int) -> None:
        self.process, self.log, self.metrics_port = process, log, metrics_port

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())


@contextlib.contextmanager
def operator_as(
    kubeconfig: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Operator]:
    log = tmp_path / "operator.log"
    port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "KOPFSCALE_METRICS_PORT": str(port),
        "KOPFSCALE_METRICS_ADDRESS": "127.0.0.1",
        **(env or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kopfscale.cli", "run", "--verbose", "--log-format=plain", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    operator = Operator(process, log, port)
    try:
        wait_for(
            lambda: operator.metrics() if operator.alive() else None, timeout=30, what="the operator to start"
        )
        yield operator
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def queue_stats(depth: int) -> Iterator[str]:
    """A tiny HTTP JSON endpoint for the ScaledApp's http metric."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"queue": {"depth": depth}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/stats"
    finally:
        server.shutdown()
        server.server_close()


def get(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any]:
    out = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def greeter_scenario(cluster: Cluster, namespace: str, operator: Operator) -> None:
    greeter = {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "Greeter",
        "metadata": {"name": "hello", "namespace": namespace},
        "spec": {"message": "hello from a least-privilege operator", "replicas": 1},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(greeter))
    wait_for(
        lambda: condition(get(cluster, "greeter", "hello", namespace), "Ready").get("status") == "True",
        timeout=45,
        what=f"Greeter hello to be Ready; operator log:\n{operator.output()[-3000:]}",
    )
    assert get(cluster, "deployment", "hello", namespace) and get(cluster, "service", "hello", namespace)


def scaledapp_scenario(cluster: Cluster, namespace: str, operator: Operator) -> None:
    with queue_stats(depth=30) as url:
        app = {
            "apiVersion": "kopfscale.dev/v1",
            "kind": "ScaledApp",
            "metadata": {"name": "worker", "namespace": namespace},
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": "worker"}},
                    "spec": {"containers": [{"name": "worker", "image": "registry.k8s.io/pause:3.10"}]},
                },
                "minReplicas": 1,
                "maxReplicas": 5,
                "pollingInterval": 1,
                "metrics": [
                    {
                        "name": "queue",
                        "type": "http",
                        "http": {"url": url, "valueLocation": "$.queue.depth"},
                        "target": {"type": "AverageValue", "value": 10},
                    }
                ],
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(app))
        # 30 queued / 10 per replica: three replicas, set through deployments/scale.
        wait_for(
            lambda: (get(cluster, "deployment", "worker", namespace).get("spec") or {}).get("replicas") == 3,
            timeout=45,
            what=f"ScaledApp worker to scale to 3; operator log:\n{operator.output()[-3000:]}",
        )


def assert_no_permission_errors(operator: Operator) -> None:
    """No RBAC denial in the log (the API server words them: User "..." cannot VERB resource ...)."""
    denials = [line for line in operator.output().splitlines() if re.search(r"cannot \w+ resource", line)]
    assert not denials, "\n".join(denials)


def test_operator_works_with_exactly_the_chart_clusterrole(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    with chart_rbac(cluster, namespace) as sa:
        release = sa.removesuffix("-kopfscale")
        kubeconfig = token_kubeconfig(cluster, namespace, sa, tmp_path / "kubeconfig")
        with operator_as(kubeconfig, tmp_path, "--all-namespaces", f"--peering={release}") as operator:
            greeter_scenario(cluster, namespace, operator)
            scaledapp_scenario(cluster, namespace, operator)
            metrics = operator.metrics()
            assert 'kopfscale_reconciles_total{handler="' in metrics
            assert 'resource="greeters"' in metrics and 'outcome="success"' in metrics, metrics[-4000:]
            assert "kopfscale_reconcile_duration_seconds_bucket" in metrics
            # kopf registered this replica in the chart's peering object.
            peering = json.loads(cluster.kubectl("get", "clusterkopfpeering", release, "-o", "json").stdout)
            assert peering.get("status"), peering
            assert_no_permission_errors(operator)
        cluster.kubectl("delete", "scaledapp,greeter", "--all", "-n", namespace, "--wait=false")


def test_operator_works_with_exactly_the_chart_namespaced_role(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    with chart_rbac(cluster, namespace, "--set", f"watchNamespaces={{{namespace}}}") as sa:
        release = sa.removesuffix("-kopfscale")
        assert not cluster.kubectl(
            "get", "clusterrole", sa, "--ignore-not-found", "-o", "name"
        ).stdout.strip()
        kubeconfig = token_kubeconfig(cluster, namespace, sa, tmp_path / "kubeconfig")
        with operator_as(
            kubeconfig, tmp_path, f"--namespace={namespace}", f"--peering={release}", env=NAMESPACED_ENV
        ) as operator:
            greeter_scenario(cluster, namespace, operator)
            scaledapp_scenario(cluster, namespace, operator)
            assert_no_permission_errors(operator)
        cluster.kubectl("delete", "scaledapp,greeter", "--all", "-n", namespace, "--wait=false")


def test_a_missing_verb_is_reported_not_hung_on(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    """Take `create` on services away: the Greeter says Forbidden in its Ready condition and an
    event, the log says why, and the operator keeps running."""
    with chart_rbac(cluster, namespace, "--set", f"watchNamespaces={{{namespace}}}") as sa:
        release = sa.removesuffix("-kopfscale")
        role = json.loads(cluster.kubectl("get", "role", sa, "-n", namespace, "-o", "json").stdout)
        for rule in role["rules"]:
            if rule["resources"] == ["services"]:
                rule["verbs"].remove("create")
        cluster.kubectl("replace", "-f", "-", input=json.dumps(role))
        kubeconfig = token_kubeconfig(cluster, namespace, sa, tmp_path / "kubeconfig")
        with operator_as(
            kubeconfig, tmp_path, f"--namespace={namespace}", f"--peering={release}", env=NAMESPACED_ENV
        ) as operator:
            greeter = {
                "apiVersion": "kopfscale.dev/v1",
                "kind": "Greeter",
                "metadata": {"name": "denied", "namespace": namespace},
                "spec": {"message": "no service for me", "replicas": 1},
            }
            cluster.kubectl("apply", "-f", "-", input=json.dumps(greeter))
            ready = wait_for(
                lambda: condition(get(cluster, "greeter", "denied", namespace), "Ready") or None,
                timeout=30,
                what=f"a Ready condition; operator log:\n{operator.output()[-3000:]}",
            )
            wait_for(
                lambda: (
                    condition(get(cluster, "greeter", "denied", namespace), "Ready").get("reason")
                    == "Forbidden"
                ),
                timeout=30,
                what=f"Ready=False/Forbidden (last: {ready}); log:\n{operator.output()[-3000:]}",
            )
            ready = condition(get(cluster, "greeter", "denied", namespace), "Ready")
            assert ready["status"] == "False"
            assert "services" in ready["message"] and "forbidden" in ready["message"].lower()
            wait_for(
                lambda: "Forbidden" in operator.output() or "forbidden" in operator.output(),
                timeout=10,
                what="the permission error in the log",
            )
            events = cluster.kubectl(
                "get",
                "events",
                "-n",
                namespace,
                "--field-selector",
                "involvedObject.name=denied",
                "-o",
                "json",
            ).stdout
            assert "Forbidden" in events
            assert operator.alive(), operator.output()[-3000:]
        cluster.kubectl("delete", "greeter", "--all", "-n", namespace, "--wait=false")
