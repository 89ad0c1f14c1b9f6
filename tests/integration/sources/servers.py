"""Real local servers for the metric-source tests (the fixtures live in conftest.py).

Everything listens on 127.0.0.1 on free ports and is stopped at teardown; the Prometheus process
runs in its own session and is terminated (then killed) by its process group, so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROMETHEUS_READY_TIMEOUT = 60.0  # seconds; a loaded 2-core CI box can take a while to open the TSDB


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    delay: float = 0.0  # seconds to stall before answering (a "slow server")


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class StubServer:
    """A threaded HTTP server answering each path with the :class:`Reply` a test sets."""

    url: str = ""
    routes: dict[str, Reply] = field(default_factory=dict)
    requests: list[SeenRequest] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def reply(self, path: str, reply: Reply) -> str:
        self.routes[path] = reply
        return self.url + path


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that time out and hang up are expected here


def stub_handler(stub: StubServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            stub.requests.append(SeenRequest("GET", self.path, dict(self.headers.items())))
            reply = stub.routes.get(path, Reply(404, b'{"error": "no such route"}'))
            if reply.delay:
                stub.released.wait(reply.delay)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="stub-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- Prometheus -------------------------------------------------------------------------------


@dataclass
class Exporter:
    """A /metrics endpoint in the text exposition format; tests set gauge series on it."""

    url: str = ""
    series: dict[str, float] = field(default_factory=dict)  # 'name{labels}' -> value
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, name: str, value: float, **labels: str) -> None:
        rendered = ",".join(f'{key}="{val}"' for key, val in sorted(labels.items()))
        with self.lock:
            self.series[f"{name}{{{rendered}}}"] = value

    def clear(self) -> None:
        with self.lock:
            self.series.clear()

    def render(self) -> bytes:
        with self.lock:
            names = sorted({key.split("{", 1)[0] for key in self.series})
            lines = []
            for name in names:
                lines.append(f"# HELP {name} A gauge set by the test.")
                lines.append(f"# TYPE {name} gauge")
                lines += [
                    f"{key} {value!r}"
                    for key, value in sorted(self.series.items())
                    if key.startswith(name + "{")
                ]
        return ("\n".join(lines) + "\n").encode()


def exporter_handler(exporter: Exporter) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exporter.render()
            self.send_response(200 if self.path.startswith("/metrics") else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@dataclass
class Prometheus:
    url: str
    exporter: Exporter
    log: Path


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        reason = "the prometheus binary is not installed (apt-get install -y prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true, so this is a failure, not a skip")
        pytest.skip(reason)
    return binary


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # its own session (start_new_session): only its group
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + PROMETHEUS_READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(
        f"prometheus not ready after {PROMETHEUS_READY_TIMEOUT:.0f}s:\n{log.read_text()[-4000:]}"
    )
