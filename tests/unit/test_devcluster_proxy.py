"""The fault proxy of the local control plane, in front of a loopback echo server."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from kopfscale_devcluster.proxy import TcpProxy


@pytest.fixture()
def echo() -> Iterator[tuple[str, int]]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(ConnectionResetError):  # reset: test_reset_closes_...
            while data := conn.recv(4096):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield ("127.0.0.1", int(server.getsockname()[1]))
    stop.set()
    server.close()


@pytest.fixture()
def proxy(echo: tuple[str, int]) -> Iterator[TcpProxy]:
    with TcpProxy(echo).start() as running:
        yield running


def connect(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=5)


def test_forwards_both_ways(proxy: TcpProxy) -> None:
    with connect(proxy) as client:
        client.sendall(b"hello")
        assert client.recv(5) == b"hello"
    assert not proxy.blackholed


def test_blackhole_keeps_connections_open_and_silent_until_unblocked(proxy: TcpProxy) -> None:
    with connect(proxy) as client, connect(proxy) as idle:
        client.sendall(b"one")
        assert client.recv(3) == b"one"
        proxy.blackhole()
        client.sendall(b"two")  # accepted by the kernel: nothing tells the sender
        client.settimeout(1.0)
        with pytest.raises(TimeoutError):  # a timeout, not an EOF or a reset: half-open
            client.recv(3)
        with connect(proxy) as newcomer:  # new connections are accepted and get nothing either
            newcomer.sendall(b"new")
            newcomer.settimeout(1.0)
            with pytest.raises(TimeoutError):
                newcomer.recv(3)
            assert proxy.open_connections == 3
            proxy.unblock()
            newcomer.settimeout(5)
            assert newcomer.recv(3) == b"new"
        client.settimeout(5)
        assert client.recv(3) == b"two"  # what waited during the blackhole arrives
        idle.sendall(b"idle")
        assert idle.recv(4) == b"idle"


def test_reset_closes_every_connection(proxy: TcpProxy) -> None:
    with connect(proxy) as client:
        client.sendall(b"x")
        assert client.recv(1) == b"x"
        proxy.reset()
        with contextlib.suppress(ConnectionResetError):  # an RST, or at least an EOF
            assert client.recv(1) == b""
    with connect(proxy) as again:  # the proxy itself keeps serving
        again.sendall(b"y")
        assert again.recv(1) == b"y"


@pytest.mark.parametrize(
    ("upstream", "host"), [(("10.0.0.1", 443), "127.0.0.1"), (("127.0.0.1", 443), "0.0.0.0")]
)
def test_refuses_anything_but_loopback(upstream: tuple[str, int], host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        TcpProxy(upstream, host=host).start()
