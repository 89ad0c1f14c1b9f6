"""A loopback TCP proxy that can blackhole its connections, for network-fault tests.

A real partition between a client and the apiserver does not close anything: packets stop
arriving, both ends keep their connections and only a timeout notices. :meth:`TcpProxy.blackhole`
plays that: it stops forwarding in both directions and keeps every connection open (no FIN, no
RST), so bytes sent meanwhile wait in the kernel's buffers; new connections are accepted and get
nothing either (a TLS handshake hangs). :meth:`TcpProxy.unblock` lets the waiting bytes through,
as a healed link would. :meth:`TcpProxy.reset` is the other fault: every connection is closed with
an RST at once.

Both ends must be loopback addresses: the proxy refuses anything else.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

_POLL = 0.1  # seconds a pump waits before it looks at the blackhole switch again


def _require_loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the fault proxy stays on loopback; {host} is not a loopback address")


@dataclass
class _Connection:
    client: socket.socket
    upstream: socket.socket
    open_pumps: int = 2

    def close(self, *, reset: bool = False) -> None:
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                if reset:  # SO_LINGER 0: close() sends an RST instead of a FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()


@dataclass
class TcpProxy:
    """Forward ``host:port`` (a free loopback port by default) to ``upstream``, one thread per
    direction of each connection."""

    upstream: tuple[str, int]
    host: str = "127.0.0.1"
    port: int = 0
    kubeconfig: Path | None = None  # set by LocalCluster.proxy(): a kubeconfig pointing here
    _flowing: threading.Event = field(default_factory=threading.Event)
    _closed: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connections: list[_Connection] = field(default_factory=list)
    _listener: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def blackholed(self) -> bool:
        return not self._flowing.is_set()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self) -> TcpProxy:
        _require_loopback(self.host)
        _require_loopback(self.upstream[0])
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        listener.settimeout(_POLL)
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        self._flowing.set()
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()
        return self

    def blackhole(self) -> None:
        """Stop forwarding; keep every connection (and new ones) open and silent."""
        self._flowing.clear()

    def unblock(self) -> None:
        """Forward again, including what was sent while blackholed."""
        self._flowing.set()

    def reset(self) -> None:
        """Close every established connection with an RST (new ones are still accepted)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close(reset=True)

    def close(self) -> None:
        self._closed.set()
        self._flowing.set()  # wake the pumps so they see the proxy is closed
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        self.reset()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:  # upstream down (e.g. the apiserver is stopped): refuse like it would
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            connection = _Connection(client, upstream)
            with self._lock:
                self._connections.append(connection)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(connection, source, sink), name=f"proxy-{self.port}", daemon=True
                ).start()

    def _pump(self, connection: _Connection, source: socket.socket, sink: socket.socket) -> None:
        failed = False
        try:
            while not self._closed.is_set():
                if not self._flowing.wait(_POLL):
                    continue
                readable, _, _ = select.select([source], [], [], _POLL)
                if not readable or not self._flowing.is_set():
                    continue  # blackholed meanwhile: leave the bytes in the kernel's buffer
                data = source.recv(65536)
                if not data:  # the sender closed its side: pass the FIN on
                    sink.shutdown(socket.SHUT_WR)
                    break
                sink.sendall(data)
        except (OSError, ValueError):  # reset by a peer, or closed by reset()/close()
            failed = True
        with self._lock:
            connection.open_pumps -= 1
            done = failed or connection.open_pumps == 0 or self._closed.is_set()
            if done and connection in self._connections:
                self._connections.remove(connection)
        if done:
            connection.close()
