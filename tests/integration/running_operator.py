"""The operator as production runs it, for tests that load or break it: a process of its own
(``kopfscale run``, INFO logging, its liveness endpoint), admin requests straight to the API server,
and the bodies of the Greeters and ScaledApps they create in bulk."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pykube

from kopfscale_devcluster.cluster import free_port
from tests.helpers import wait_for

GREETERS = "/apis/kopfscale.dev/v1/namespaces/{ns}/greeters"
SCALEDAPPS = "/apis/kopfscale.dev/v1/namespaces/{ns}/scaledapps"
DEPLOYMENTS = "/apis/apps/v1/namespaces/{ns}/deployments"
SERVICES = "/api/v1/namespaces/{ns}/services"
OURS = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkopfscale"


class Api:
    """Admin requests straight to the API server (never through the fault proxy), short timeouts.
    A request that gets no answer raises; the caller decides whether that matters."""

    def __init__(self, kubeconfig: Path) -> None:
        self.http = pykube.HTTPClient(pykube.KubeConfig.from_file(str(kubeconfig)), timeout=5)
        # pykube writes the client certificate to a file on first use, and threads that arrive
        # at once read it half-written ("PEM lib"): one request first, before any thread.
        self.call("GET", "/version")

    def call(self, method: str, path: str, body: Any = None, *, merge: bool = False) -> tuple[int, Any]:
        headers = {"Content-Type": "application/merge-patch+json" if merge else "application/json"}
        data = json.dumps(body) if body is not None else None
        response = self.http.session.request(method, self.http.url + path, data=data, headers=headers)
        return response.status_code, response.json() if response.content else None

    def items(self, path: str) -> list[dict[str, Any]]:
        status, body = self.call("GET", path)
        assert status == 200, f"GET {path}: {status} {body}"
        return list(body["items"])


def greeter(name: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "Greeter",
        "metadata": {"name": name},
        "spec": {"message": message, "replicas": 1},
    }


def scaledapp(name: str, image: str) -> dict[str, Any]:
    """A ScaledApp that runs its own Deployment and wants 2 replicas all year (a cron window)."""
    return {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "ScaledApp",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            "minReplicas": 1,
            "maxReplicas": 3,
            "pollingInterval": 5,
            "metrics": [
                {
                    "name": "always",
                    "type": "cron",
                    "cron": {
                        "timezone": "UTC",
                        "start": "* * * * *",
                        "end": "0 0 1 1 *",
                        "desiredReplicas": 2,
                    },
                }
            ],
        },
    }


# --- the operator as a process of its own: it can be SIGKILLed and must not restart by itself ------------
@dataclass
class Operator:
    kubeconfig: Path
    namespace: str
    env: dict[str, str]
    log: Path
    liveness_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        liveness = f"http://127.0.0.1:{self.liveness_port}/healthz"
        args = [sys.executable, "-m", "kopfscale.cli", "run", "--standalone", "--namespace", self.namespace,
                "--liveness", liveness, "--metrics-port", "0",
                *(["--debug"] if os.environ.get("KOPFSCALE_TEST_DEBUG") else [])]  # fmt: skip
        env = {**self.env, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n--- start #{self.starts} ---\n".encode())
            self.process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self, timeout: float = 3.0) -> bool:
        """What the kubelet's probe would see: 200, or anything else (500, no answer) as unhealthy."""
        conn = http.client.HTTPConnection("127.0.0.1", self.liveness_port, timeout=timeout)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def running(operator: Operator) -> Iterator[Operator]:
    operator.start()
    try:
        wait_for(
            operator.healthy, timeout=60, what=f"the operator's liveness endpoint; log:\n{operator.tail()}"
        )
        yield operator
    finally:
        operator.stop()


def create_all(api: Api, ns: str, bodies: list[tuple[str, dict[str, Any]]], threads: int = 8) -> None:
    def create(item: tuple[str, dict[str, Any]]) -> None:
        path, body = item
        status, answer = api.call("POST", path.format(ns=ns), body)
        assert status == 201, f"POST {body['metadata']['name']}: {status} {answer}"

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, bodies))
