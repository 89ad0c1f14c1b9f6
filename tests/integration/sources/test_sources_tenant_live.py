"""Tenant safety of the HTTP sources against real loopback servers (no cluster needed).

Every server listens on 127.0.0.0/8. The refused address is 127.0.0.2, refused by configuring
the policy (``KOPFSCALE_EGRESS_DENY_CIDRS``), and a listener there counts the connections it
accepts, which must stay at 0 whatever spelling or DNS answer leads to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from kopfscale import egress
from kopfscale.scaledapp.sources import fetch

from .util import read_once

MARKER = "MARKER-c0ffee-7f3a"


@dataclass
class Listener:
    """A TCP listener that only counts accepted connections (and answers nothing useful)."""

    host: str
    port: int = 0
    accepted: int = 0
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Listener:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            with contextlib.suppress(OSError):
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{"load": 99}')
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()


@pytest.fixture()
def refused_listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    monkeypatch.setenv(egress.ENV_DENY_CIDRS, "127.0.0.2/32")
    listener = Listener("127.0.0.2").start()
    try:
        yield listener
    finally:
        listener.stop()


def spec(url: str, location: str = "$.load", **extra: Any) -> dict[str, Any]:
    return {
        "name": "load",
        "type": "http",
        "http": {"url": url, "valueLocation": location, **extra},
        "target": {"type": "AverageValue", "value": 10},
    }


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.2",
        "2130706434",  # decimal
        "0x7f000002",  # hex
        "0177.0.0.2",  # octal
        "127.2",  # shorthand
        "[::ffff:127.0.0.2]",  # IPv4-mapped IPv6
        "[::ffff:7f00:2]",
    ],
)
def test_a_refused_address_is_never_connected_to_in_any_spelling(
    refused_listener: Listener, host: str
) -> None:
    url = f"http://{host}:{refused_listener.port}/stats"
    reading = read_once(spec(url))
    assert reading.value is None
    assert reading.error is not None
    assert f"http {url}: blocked by the operator's metric egress policy: " in reading.error
    assert "127.0.0.2/32" in reading.error
    assert refused_listener.accepted == 0


class FakeDns(AbstractResolver):
    """Answers every name with the given addresses (a name an attacker controls, rebinding)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        return [
            {"hostname": host, "host": a, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
            for a in addresses
        ]

    async def close(self) -> None:
        pass


def fetch_with(
    dns: FakeDns, url: str, policy: egress.EgressPolicy
) -> tuple[fetch.Response | None, str | None]:
    async def main() -> tuple[fetch.Response | None, str | None]:
        client = fetch.HttpClient(policy=policy, resolver=dns)
        await client.open()
        try:
            return await client.get(url, headers={}), None
        except Exception as e:
            return None, f"{type(e).__name__}: {e}"
        finally:
            await client.close()

    return asyncio.run(main())


def test_the_address_connected_to_is_the_address_checked_after_dns(refused_listener: Listener) -> None:
    policy = egress.from_env()
    url = f"http://metrics.tenant.test:{refused_listener.port}/stats"
    # A name that resolves to the refused address: refused at connect time, nothing connected.
    response, error = fetch_with(FakeDns(["127.0.0.2"]), url, policy)
    assert response is None and error is not None
    assert error.startswith("EgressRefused: blocked by the operator's metric egress policy: ")
    assert "metrics.tenant.test resolves to 127.0.0.2 is in the denied range 127.0.0.2/32" in error
    # Rebinding: first an allowed answer, then the refused one; each connection uses what was checked.
    allowed = Listener("127.0.0.1").start()
    try:
        rebinding = FakeDns(["127.0.0.1"], ["127.0.0.2"])
        url = f"http://metrics.tenant.test:{allowed.port}/stats"
        first, _ = fetch_with(rebinding, url, policy)
        assert first is not None and first.status == 200
        second, error = fetch_with(rebinding, url, policy)
        assert second is None and error is not None and "127.0.0.2" in error
        # Both answers at once: only the allowed one is connected to.
        both, error = fetch_with(FakeDns(["127.0.0.2", "127.0.0.1"]), url, policy)
        assert error is None and both is not None and both.status == 200
        assert allowed.accepted == 2
    finally:
        allowed.stop()
    assert refused_listener.accepted == 0


# --- redirects, headers, cookies -----------------------------------------------------------------


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


class Server:
    """A loopback HTTP server; ``routes[path] = (status, headers, body)``."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.seen: list[Seen] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.seen.append(Seen(self.path, dict(self.headers.items())))
                status, headers, body = server.routes.get(self.path, (404, {}, b"{}"))
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def two_servers() -> Iterator[tuple[Server, Server]]:
    a, b = Server(), Server()
    yield a, b
    a.close()
    b.close()


def test_redirects_to_another_origin_are_not_followed_and_carry_nothing(
    two_servers: tuple[Server, Server],
) -> None:
    a, b = two_servers
    b.routes["/stats"] = (200, {}, b'{"load": 7}')
    a.routes["/stats"] = (302, {"Location": f"{b.url}/stats"}, b"")
    reading = read_once(spec(f"{a.url}/stats", headers={"X-Api-Key": "k-123"}))
    assert reading.error == (
        f"http {a.url}/stats: HTTP 302 redirect to another origin, not followed "
        "(redirects are followed within the same scheme, host and port only)"
    )
    assert [s.headers.get("X-Api-Key") for s in a.seen] == ["k-123"]
    assert b.seen == []  # the other port never saw a request, let alone the header


def test_same_origin_redirects_are_followed_with_the_header_and_bounded(
    two_servers: tuple[Server, Server],
) -> None:
    a, _ = two_servers
    a.routes["/old"] = (301, {"Location": "/new"}, b"")
    a.routes["/new"] = (307, {"Location": f"{a.url}/stats"}, b"")
    a.routes["/stats"] = (200, {}, b'{"load": 7}')
    reading = read_once(spec(f"{a.url}/old", headers={"X-Api-Key": "k-123"}))
    assert reading.value == 7.0, reading.error
    assert [(s.path, s.headers.get("X-Api-Key")) for s in a.seen] == [
        ("/old", "k-123"),
        ("/new", "k-123"),
        ("/stats", "k-123"),
    ]
    a.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    a.seen.clear()
    looping = read_once(spec(f"{a.url}/loop"))
    assert looping.error == f"http {a.url}/loop: more than 3 redirects, not followed further"
    assert len(a.seen) == 4


def test_a_redirect_to_a_refused_address_is_refused(
    two_servers: tuple[Server, Server], refused_listener: Listener
) -> None:
    a, _ = two_servers
    a.routes["/stats"] = (302, {"Location": f"http://127.0.0.2:{refused_listener.port}/stats"}, b"")
    reading = read_once(spec(f"{a.url}/stats"))
    assert reading.error is not None and "redirect to another origin, not followed" in reading.error
    assert refused_listener.accepted == 0


def test_cookies_are_never_kept_nor_shared_between_scaledapps(two_servers: tuple[Server, Server]) -> None:
    a, _ = two_servers
    a.routes["/tenant-a"] = (200, {"Set-Cookie": "session=tenant-a-secret; Path=/"}, b'{"load": 1}')
    a.routes["/tenant-b"] = (200, {}, b'{"load": 2}')

    async def main() -> None:
        from kopfscale.scaledapp.sources import SourceContext, opened, read_metric, shared

        def ctx(name: str) -> SourceContext:
            return SourceContext(namespace="team", pod_selector=None, now=lambda: None, scaledapp=name)  # type: ignore[arg-type,return-value]

        async with opened():  # one operator, the same clients for both ScaledApps
            assert (await read_metric(spec(f"{a.url}/tenant-a"), ctx("a"))).value == 1.0
            assert (await read_metric(spec(f"{a.url}/tenant-b"), ctx("b"))).value == 2.0
            await asyncio.sleep(shared.DEFAULT_AGE)  # a's next round: its first read is too old to share
            assert (await read_metric(spec(f"{a.url}/tenant-a"), ctx("a"))).value == 1.0

    asyncio.run(main())
    assert [s.path for s in a.seen] == ["/tenant-a", "/tenant-b", "/tenant-a"]
    assert all("Cookie" not in s.headers for s in a.seen), [s.headers for s in a.seen]


@pytest.mark.parametrize(
    ("status", "content_type", "body", "location"),
    [
        (500, "text/plain", f"database password is {MARKER}".encode(), "$.load"),
        (200, "text/html", f"<html>{MARKER}</html>".encode(), "$.load"),
        (200, "application/json", f'{{"load": "{MARKER}"}}'.encode(), "$.load"),
        (200, "application/json", f'{{"load": {{"{MARKER}": 1}}}}'.encode(), "$.load"),
        (403, "application/json", f'{{"error": "{MARKER}"}}'.encode(), "$.load"),
    ],
)
def test_response_bodies_never_reach_the_error(
    two_servers: tuple[Server, Server], status: int, content_type: str, body: bytes, location: str
) -> None:
    a, _ = two_servers
    a.routes["/stats"] = (status, {"Content-Type": content_type}, body)
    reading = read_once(spec(f"{a.url}/stats", location))
    assert reading.error is not None
    assert MARKER not in reading.error and "password" not in reading.error
    assert reading.error.startswith(f"http {a.url}/stats: ")


def test_a_credential_in_a_malformed_url_is_never_shown() -> None:
    reading = read_once(spec("http://user:hunter2@127.0.0.1:99999/stats"))
    assert reading.error is not None and "hunter2" not in reading.error
    assert reading.error.startswith("http http://***@127.0.0.1:99999/stats: ")


def test_the_prometheus_source_is_held_to_the_same_policy(refused_listener: Listener) -> None:
    address = f"http://0x7f000002:{refused_listener.port}"
    reading = read_once(
        {
            "name": "rps",
            "type": "prometheus",
            "prometheus": {"serverAddress": address, "query": "sum(up)"},
            "target": {"type": "AverageValue", "value": 10},
        }
    )
    assert reading.error == (
        f"prometheus {address}: blocked by the operator's metric egress policy: "
        "127.0.0.2 is in the denied range 127.0.0.2/32"
    )
    assert refused_listener.accepted == 0
