"""The metric the benchmark's ScaledApps scale on: their ``http`` source reads it from here.

``GET /value/{key}`` answers ``{"value": N}`` (10 until set); ``PUT /value/{key}?v=N`` sets it.
Runs as its own process, so the benchmark driver's work never delays an answer.

    python -m bench.metric_server --port-file FILE
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from bench.common import serve_on_loopback

DEFAULT = 10.0


def make_app() -> web.Application:
    values: dict[str, float] = {}

    async def read(request: web.Request) -> web.Response:
        return web.json_response({"value": values.get(request.match_info["key"], DEFAULT)})

    async def write(request: web.Request) -> web.Response:
        values[request.match_info["key"]] = float(request.query["v"])
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/value/{key}", read)
    app.router.add_put("/value/{key}", write)
    return app


async def serve(port: int, port_file: Path) -> None:
    await serve_on_loopback(web.AppRunner(make_app(), access_log=None), port, port_file)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.port, args.port_file))


if __name__ == "__main__":
    main()
