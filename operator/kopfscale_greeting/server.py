"""The greeting server the Greeter's Pods run (``kopfscale greet``).

Deliberately tiny: ``GET /`` answers with the message (plain text, or JSON for clients that
ask with ``Accept: application/json``) and ``GET /healthz`` answers the Deployment's probes.
The message is fixed for the life of the process; a new message means new Pods (the
Deployment rolls), so every replica serves exactly one message.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass

from aiohttp import web

logger = logging.getLogger(__name__)

MESSAGE_KEY = web.AppKey("message", str)


@dataclass(frozen=True)
class _MediaRange:
    type: str
    subtype: str
    q: float

    def matches(self, media_type: str) -> int:
        """Specificity of the match (2 exact, 1 ``type/*``, 0 ``*/*``), or -1 for none."""
        kind, _, sub = media_type.partition("/")
        if self.type == kind and self.subtype == sub:
            return 2
        if self.type == kind and self.subtype == "*":
            return 1
        if self.type == "*" and self.subtype == "*":
            return 0
        return -1


def _parse_accept(header: str) -> list[_MediaRange]:
    ranges: list[_MediaRange] = []
    for part in header.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        kind, slash, sub = media.lower().partition("/")
        if not slash or not kind or not sub:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        ranges.append(_MediaRange(kind, sub, q))
    return ranges


def _quality(ranges: list[_MediaRange], media_type: str) -> tuple[float, int]:
    """The q-value the most specific matching range gives ``media_type`` (RFC 9110 §12.5.1)."""
    best: tuple[int, float] = (-1, 0.0)
    for media_range in ranges:
        specificity = media_range.matches(media_type)
        if specificity > best[0]:
            best = (specificity, media_range.q)
    return best[1], best[0]


def wants_json(accept: str | None) -> bool:
    """JSON only when the client prefers it to plain text; text is the default and tie-break."""
    if not accept:
        return False
    ranges = _parse_accept(accept)
    json_q, json_specificity = _quality(ranges, "application/json")
    text_q, text_specificity = _quality(ranges, "text/plain")
    if json_q <= 0:
        return False
    return json_q > text_q or (json_q == text_q and json_specificity > text_specificity)


_dumps = functools.partial(json.dumps, ensure_ascii=False)


async def _greet(request: web.Request) -> web.Response:
    message = request.app[MESSAGE_KEY]
    headers = {"Vary": "Accept"}
    if wants_json(request.headers.get("Accept")):
        return web.json_response({"message": message}, headers=headers, dumps=_dumps)
    return web.Response(text=message + "\n", content_type="text/plain", charset="utf-8", headers=headers)


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n", content_type="text/plain")


def make_app(message: str) -> web.Application:
    app = web.Application()
    app[MESSAGE_KEY] = message
    app.router.add_get("/", _greet)
    app.router.add_get("/healthz", _healthz)
    return app


def serve(message: str, host: str, port: int) -> None:
    """Serve until SIGTERM/SIGINT (the kubelet stops Pods with SIGTERM; exit promptly)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logger.info("greeting on http://%s:%d/ with a %d-character message", host, port, len(message))
    web.run_app(
        make_app(message),
        host=host,
        port=port,
        print=None,
        access_log=None,
        handle_signals=True,
        shutdown_timeout=5.0,
    )


__all__ = ["make_app", "serve", "wants_json"]
