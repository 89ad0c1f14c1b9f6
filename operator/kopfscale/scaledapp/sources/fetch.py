"""Every HTTP request of the metric sources goes through here (``http`` and ``prometheus``).

One place for what an outbound request to a tenant-chosen URL must respect — pool size, body
limit, error texts — so that each scaler only says *what* it fetches. Each HTTP scaler owns one
:class:`HttpClient`, opened and closed with the operator (``Scaler.open``/``close``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from kopfscale.scaledapp.sources.base import ConfigT, Scaler, SourceError, _oneline, describe_url

MAX_BODY_BYTES = 4 * 1024 * 1024  # we read numbers, not data dumps: refuse absurdly large responses
#: Open connections to metric endpoints, per HTTP scaler. Reads take milliseconds, so a few dozen
#: connections serve thousands of loops; each kept-alive connection costs buffers (RSS).
CONNECTIONS = 32


@dataclass(frozen=True)
class Response:
    status: int
    reason: str | None
    content_type: str
    body: bytes


class HttpClient:
    """A connection pool for one scaler; ``get`` before ``open`` is a clear error, not a leak."""

    def __init__(self, connections: int = CONNECTIONS) -> None:
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._connections))

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def get(
        self, url: str, *, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> Response:
        if self._session is None:
            raise SourceError("the metric sources are not started (the operator is starting or stopping)")
        async with self._session.get(url, headers=dict(headers), params=params) as response:
            body = await read_body(response)
            return Response(response.status, response.reason, response.content_type, body)


class HttpScaler(Scaler[ConfigT]):
    """A scaler that reads over HTTP: its :class:`HttpClient` opens and closes with the operator,
    and its label is its type and the URL in ``url_field`` (credentials redacted)."""

    url_field: ClassVar[str]

    def __init__(self) -> None:
        self.client = HttpClient()

    def describe(self, config: Mapping[str, Any]) -> str:
        return describe_url(self.type, config.get(self.url_field))

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()


async def read_body(response: aiohttp.ClientResponse, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole response body, refusing more than ``limit`` bytes."""
    if response.content_length is not None and response.content_length > limit:
        raise SourceError(f"response is too large ({response.content_length} bytes, limit {limit})")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise SourceError(f"response is too large (more than {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def http_status_error(status: int, reason: str | None, body: bytes) -> SourceError:
    """A :class:`SourceError` for a non-2xx response, with a short snippet of the body."""
    message = f"HTTP {status}" + (f" {reason}" if reason else "")
    snippet = body[:200].decode("utf-8", errors="replace").strip()
    if snippet:
        message += f": {_oneline(snippet)}"
    return SourceError(message)
