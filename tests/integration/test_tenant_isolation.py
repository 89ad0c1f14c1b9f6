"""Tenants against the running operator: what one ScaledApp author can make it do to others.

The operator runs in-process as ``kopf run`` would start it, at its default log level (INFO, so
the logs checked for read-back are what an admin sees), with metric servers on loopback only.
127.0.0.2 is refused by configuring the policy, and a listener there counts connections.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kopf.testing import KopfRunner

from kopfscale import kube

from ..conftest import Cluster
from ..helpers import wait_for
from .sources.test_sources_tenant_live import Listener
from .test_scaledapp import apply, condition, events, get, replicas, scaledapp

pytestmark = pytest.mark.integration

MARKER = "MARKER-c0ffee-7f3a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: The noisy tenants' endpoints, in their own process (as they would be: elsewhere, not in the
#: operator's process competing for its interpreter lock): /slow answers after 8 s, /huge is a
#: JSON document just under the 1 MiB limit.
NOISY_SERVER = r"""
import http.server, json, sys, threading, time
huge = json.dumps({"items": [{"v": i, "pad": [1, 2, {"w": "x" * 8}]} for i in range(12000)]}).encode()
assert len(huge) < 1024 * 1024
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(8)
            body = b'{"load": 1}'
        elif self.path.startswith("/huge"):
            body = huge
        else:
            body = b"{}"
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass
    def log_message(self, *args):
        pass
class Quiet(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass
server = Quiet(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()  # until the test closes our stdin
"""

#: The liveness probe, in its own process too (the kubelet probes from outside the operator).
PROBER = r"""
import sys, time, urllib.request
url = sys.argv[1]
while True:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
        print(f"{time.monotonic() - started:.4f}", flush=True)
    except OSError as e:
        print(f"error {e}", flush=True)
    time.sleep(0.2)
"""


@contextlib.contextmanager
def subprocess_server() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", NOISY_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield f"http://127.0.0.1:{int(process.stdout.readline())}"
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def prober(url: str) -> Iterator[list[str]]:
    """Probe ``url`` every 0.2 s from another process; the list gets its lines when done."""
    lines: list[str] = []
    process = subprocess.Popen([sys.executable, "-c", PROBER, url], stdout=subprocess.PIPE, text=True)
    try:
        yield lines
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=10)
        lines.extend(out.split())


class Tenants:
    """The in-process server: the healthy tenant's /load (the test sets its value) and /marker-*."""

    def __init__(self) -> None:
        self.value = 5.0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                content_type = "application/json"
                if path == "/load":
                    status, body = 200, json.dumps({"load": server.value}).encode()
                elif path == "/marker-500":
                    status, body, content_type = 500, f"secret is {MARKER}".encode(), "text/plain"
                elif path == "/marker-html":
                    status, body, content_type = 200, f"<p>{MARKER}</p>".encode(), "text/html"
                elif path == "/marker-string":
                    status, body = 200, json.dumps({"load": MARKER}).encode()
                else:
                    status, body = 404, b"{}"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Quiet(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.httpd = Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def tenants() -> Iterator[Tenants]:
    server = Tenants()
    yield server
    server.close()


@contextlib.contextmanager
def operator_at_info(namespace: str, *extra: str) -> Iterator[KopfRunner]:
    kube.reset()
    args = ["run", "--standalone", "--namespace", namespace, "-m", "kopfscale.app", *extra]
    with KopfRunner(args, timeout=120) as runner:
        yield runner
    assert runner.exception is None, runner.output
    assert runner.exit_code == 0, runner.output


def http_metric(name: str, url: str, location: str = "$.load", timeout: float = 1) -> dict[str, Any]:
    return {
        "name": name,
        "type": "http",
        "http": {"url": url, "valueLocation": location, "timeout": timeout},
        "target": {"type": "AverageValue", "value": 10},
    }


def metric_errors(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    status = get(cluster, namespace, "scaledapp", name).get("status", {})
    return {m["name"]: m.get("error", "") for m in status.get("metrics", [])}


def test_a_refused_url_shows_in_status_and_events_and_is_never_connected(
    cluster: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOPFSCALE_EGRESS_DENY_CIDRS", "127.0.0.2/32")
    listener = Listener("127.0.0.2").start()
    try:
        with operator_at_info(namespace):
            url = f"http://2130706434:{listener.port}/stats"  # 127.0.0.2, spelled in decimal
            apply(cluster, namespace, scaledapp("refused", url))
            expected = (
                f"http {url}: blocked by the operator's metric egress policy: "
                "127.0.0.2 is in the denied range 127.0.0.2/32"
            )
            wait_for(
                lambda: metric_errors(cluster, namespace, "refused").get("load") == expected,
                timeout=30,
                what="the refusal in status.metrics",
            )
            wait_for(
                lambda: f"metric load: {expected}" in events(cluster, namespace, "MetricFailed"),
                timeout=15,
                what="a MetricFailed Warning event with the refusal",
            )
            time.sleep(2)  # two more rounds
            assert len(events(cluster, namespace, "MetricFailed")) == 1  # one event, not one per round
    finally:
        listener.stop()
    assert listener.accepted == 0


def test_bodies_never_reach_status_events_or_logs(cluster: Cluster, namespace: str, tenants: Tenants) -> None:
    metrics = [
        http_metric("five-hundred", f"{tenants.url}/marker-500"),
        http_metric("html", f"{tenants.url}/marker-html"),
        http_metric("string", f"{tenants.url}/marker-string"),
    ]
    with operator_at_info(namespace) as runner:
        apply(cluster, namespace, scaledapp("reader", tenants.url, metrics=metrics))
        errors = wait_for(
            lambda: (
                (e := metric_errors(cluster, namespace, "reader")) and all(e.values()) and len(e) == 3 and e
            ),
            timeout=30,
            what="three metric errors in status",
        )
        wait_for(lambda: len(events(cluster, namespace, "MetricFailed")) >= 3, timeout=15, what="the events")
        everything = json.dumps(get(cluster, namespace, "scaledapp", "reader"))
        all_events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    print("errors:", json.dumps(errors, indent=1))
    assert errors["five-hundred"].endswith("HTTP 500 Internal Server Error (text/plain, 28 bytes)")
    assert errors["html"].endswith("response is not valid JSON (text/html, 25 bytes; at line 1 column 1)")
    assert errors["string"].endswith("is a non-numeric string (18 characters), expected a number")
    for text, where in ((everything, "the ScaledApp"), (all_events, "events"), (runner.output, "the log")):
        assert MARKER not in text, f"the marker reached {where}"
    assert "MARKER" not in runner.output and "secret is" not in runner.output


def test_noisy_tenants_neither_starve_a_healthy_one_nor_stall_liveness(
    cluster: Cluster, namespace: str, tenants: Tenants
) -> None:
    with subprocess_server() as noisy:
        port = free_port()
        liveness = f"http://127.0.0.1:{port}/healthz"

        # Every noisy read a different request (the query says whose and which): identical ones
        # would be made once and shared (sources/shared.py), which is not the load meant here.
        def slow(app: str) -> list[dict[str, Any]]:
            return [http_metric(f"slow-{i}", f"{noisy}/slow?{app}={i}", timeout=6) for i in range(16)]

        huge = [http_metric(f"huge-{i}", f"{noisy}/huge?i={i}", "$..v", timeout=6) for i in range(8)]
        fast = {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": 100, "periodSeconds": 1}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}],
            },
        }
        regex = [http_metric("regex", f"{noisy}/huge", "$.items[?(@.pad =~ '(x+x+)+y')].v")]
        with operator_at_info(namespace, "--liveness", liveness):
            wait_for(
                lambda: urllib.request.urlopen(liveness, timeout=2).status == 200,
                what="the liveness endpoint",
            )
            with prober(liveness) as lines:
                # 32 slow metrics: as many as the whole pool had before per-ScaledApp budgets.
                apply(cluster, namespace, scaledapp("noisy-a", tenants.url, metrics=slow("a")))
                apply(cluster, namespace, scaledapp("noisy-b", tenants.url, metrics=slow("b")))
                apply(cluster, namespace, scaledapp("noisy-huge", tenants.url, metrics=huge))
                apply(cluster, namespace, scaledapp("noisy-regex", tenants.url, metrics=regex))
                tenants.value = 5
                apply(cluster, namespace, scaledapp("healthy", f"{tenants.url}/load", behavior=fast))
                wait_for(
                    lambda: replicas(cluster, namespace, "healthy") == 1, timeout=30, what="healthy at 1"
                )
                wait_for(
                    lambda: (
                        "huge-0" in metric_errors(cluster, namespace, "noisy-huge")
                        and "slow-0" in metric_errors(cluster, namespace, "noisy-a")
                        and "slow-0" in metric_errors(cluster, namespace, "noisy-b")
                    ),
                    timeout=60,
                    what="the noisy tenants' rounds to run",
                )
                reactions = []
                for value, expected in ((38, 4), (71, 8), (12, 2)):
                    tenants.value = value
                    changed = time.monotonic()
                    wait_for(
                        lambda expected=expected: replicas(cluster, namespace, "healthy") == expected,  # type: ignore[misc]
                        timeout=20,
                        interval=0.1,
                        what=f"the healthy ScaledApp at {expected}",
                    )
                    reactions.append(time.monotonic() - changed)
                assert metric_errors(cluster, namespace, "healthy") == {"load": ""}
                refused = condition(cluster, namespace, "noisy-regex", "Ready")
        assert not [line for line in lines if line.startswith("error")], lines
        latencies = [float(line) for line in lines if not line.startswith("error")]
        worst = max(latencies)
        print(
            f"liveness under noisy tenants: {len(latencies)} probes, worst {worst * 1000:.0f} ms, "
            f"median {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms; "
            f"healthy tenant followed its load in {', '.join(f'{r:.1f}s' for r in reactions)}"
        )
        assert len(latencies) >= 20
        # Within a few polling intervals (1 s); a stall behind the noisy tenants costs their 6 s timeout.
        assert max(reactions) < 5.0, reactions
        assert worst <= 1.0, f"the liveness endpoint took {worst:.2f}s under the noisy tenants"
        assert (refused.get("status"), refused.get("reason")) == ("False", "InvalidSpec"), refused
        assert "regular-expression filter (=~)" in refused["message"]
