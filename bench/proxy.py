"""A counting reverse proxy in front of the apiserver: the only way the process under test reaches it.

It listens on plain HTTP on 127.0.0.1 and forwards every request over TLS with the admin client
certificate (the caller's own ``Authorization`` header is dropped). Each request is counted by
verb (GET, LIST, WATCH, POST, PUT, PATCH, DELETE) and resource (``deployments``,
``greeters/status``, ...). Watches are streamed through as they arrive.

    python -m bench.proxy --upstream https://127.0.0.1:6443 --pki DIR --port 0 --port-file FILE

``GET /__bench/counts`` returns the counters as JSON (never forwarded, never counted).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import serve_on_loopback

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
READ_VERBS = ("GET", "LIST", "WATCH")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "authorization", "upgrade"}


def classify(method: str, path: str, query: dict[str, str] | Any) -> tuple[str, str]:
    """(verb, resource) of a request, the way the apiserver's audit log would name them."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        rest = parts[3:]
    else:
        rest = []
    if not rest:
        return method, "discovery"
    if rest[0] == "namespaces" and len(rest) >= 3:
        rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource += "/" + rest[2]
    verb = method
    if method == "GET":
        if str(query.get("watch", "")).lower() in ("1", "true"):
            verb = "WATCH"
        elif name is None:
            verb = "LIST"
    return verb, resource


class Proxy:
    def __init__(self, upstream: str, ssl_context: ssl.SSLContext) -> None:
        self.upstream = upstream.rstrip("/")
        self.ssl_context = ssl_context
        self.counts: collections.Counter[str] = collections.Counter()
        self.bytes_out = 0  # response bytes sent to the client
        self.session: aiohttp.ClientSession | None = None

    async def start(self, _: web.Application) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl_context, limit=0),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )

    async def close(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def counts_view(self, _: web.Request) -> web.Response:
        return web.json_response({"requests": dict(self.counts), "bytes_out": self.bytes_out})

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        verb, resource = classify(request.method, request.path, request.query)
        self.counts[f"{verb} {resource}"] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read() if request.body_exists else None
        # aiohttp would label a body without a Content-Type as octet-stream, which the apiserver
        # refuses (415); requests without one (the official client sends some) must stay so.
        skip = () if "Content-Type" in request.headers else ("Content-Type",)
        async with self.session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
            skip_auto_headers=skip,
        ) as upstream:
            out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            if verb != "WATCH":
                payload = await upstream.read()
                self.bytes_out += len(payload)
                return web.Response(status=upstream.status, body=payload, headers=out_headers)
            response = web.StreamResponse(status=upstream.status, headers=out_headers)
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientPayloadError):
                async for chunk in upstream.content.iter_any():
                    self.bytes_out += len(chunk)
                    await response.write(chunk)
            return response


def ssl_context(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


async def serve(upstream: str, pki: Path, port: int, port_file: Path) -> None:
    proxy = Proxy(upstream, ssl_context(pki))
    app = web.Application(client_max_size=64 * 2**20)
    app.on_startup.append(proxy.start)
    app.on_cleanup.append(proxy.close)
    app.router.add_get("/__bench/counts", proxy.counts_view)
    app.router.add_route("*", "/{tail:.*}", proxy.forward)
    await serve_on_loopback(web.AppRunner(app, access_log=None, handle_signals=True), port, port_file)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--pki", type=Path, required=True, help="directory with ca.crt, admin.crt, admin.key")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.upstream, args.pki, args.port, args.port_file))


if __name__ == "__main__":
    main()
