"""Shared types and helpers of the metric sources (the equivalent of KEDA's ``pkg/scalers`` base).

Every source is a :class:`Source`: a ``describe`` function that names the source for humans
(the prefix of its error messages) and an async ``read`` function that returns one float or
raises :class:`SourceError` with a human-readable reason. :func:`read_metric` in the package's
``__init__`` turns both outcomes (and timeouts, and anything unexpected) into a
:class:`MetricReading` and never raises.
"""

from __future__ import annotations

import datetime
import math
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

DEFAULT_TIMEOUT = 3.0  # seconds, per source read, unless the source's ``timeout`` field says otherwise
MAX_BODY_BYTES = 4 * 1024 * 1024  # we read numbers, not data dumps: refuse absurdly large responses


@dataclass(frozen=True)
class MetricReading:
    """The outcome of reading one metric: either ``value`` or ``error`` is set."""

    name: str
    value: float | None = None
    error: str | None = None


@dataclass
class SourceContext:
    """What a source may need besides its own spec; built by the ScaledApp handlers per reconcile."""

    namespace: str
    pod_selector: str | None  # label selector of the scaled workload's pods (used by ``resource``)
    now: Callable[[], datetime.datetime]  # injectable clock (used by ``cron``)
    http: aiohttp.ClientSession  # shared session, owned (and closed) by the caller


class SourceError(Exception):
    """A reading failed for a reason worth showing to the user as is (no traceback needed)."""


Config = Mapping[str, Any]
Describe = Callable[[Config], str]
Read = Callable[[Mapping[str, Any], Config, SourceContext], Awaitable[float]]


@dataclass(frozen=True)
class Source:
    """One metric source type: ``read(metric_spec, config, ctx)`` where ``config = metric_spec[type]``."""

    describe: Describe
    read: Read


def timeout_of(config: Config) -> float:
    """The source's ``timeout`` field in seconds (default 3 s); must be a positive finite number."""
    raw = config.get("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw <= 0:
        raise SourceError(f"timeout must be a positive number of seconds, got {raw!r}")
    return float(raw)


def to_number(raw: Any, what: str) -> float:
    """A finite float from a JSON number or a numeric string; :class:`SourceError` otherwise."""
    if isinstance(raw, bool):
        raise SourceError(f"{what} is a boolean ({str(raw).lower()}), expected a number")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise SourceError(f"{what} is a non-numeric string {_short(raw)}, expected a number") from None
    elif raw is None:
        raise SourceError(f"{what} is null, expected a number")
    else:
        raise SourceError(f"{what} is {_json_kind(raw)}, expected a number")
    if not math.isfinite(value):
        raise SourceError(f"{what} is {raw!r}, expected a finite number")
    return value


def required_str(config: Config, field: str) -> str:
    raw = config.get(field)
    if not isinstance(raw, str) or not raw.strip():
        raise SourceError(f"field {field!r} is required and must be a non-empty string")
    return raw.strip()


def http_url(config: Config, field: str) -> str:
    url = required_str(config, field)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(f"field {field!r} must be an absolute http(s) URL, got {redact_url(url)!r}")
    return url


def redact_url(url: str) -> str:
    """The URL without user:password (error messages end up in the ScaledApp's status)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


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


def _short(text: str, limit: int = 60) -> str:
    text = _oneline(text)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _json_kind(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return "an object"
    if isinstance(raw, list | tuple):
        return "a list"
    return f"a {type(raw).__name__}"
