"""``type: http`` — one number out of a JSON document served over HTTP (like KEDA's metrics-api scaler).

``GET url`` (with optional ``headers``); the body must be JSON; ``valueLocation`` is a JSONPath
(jsonpath-ng, extended syntax: filters like ``$.queues[?(@.name == "jobs")].depth`` work) that must
match exactly one value, which must be a number or a numeric string.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonpath_ng.ext.parser import parse as parse_jsonpath

from kopfscale.scaledapp.sources import fetch
from kopfscale.scaledapp.sources.base import (
    Config,
    Meaning,
    SourceContext,
    SourceError,
    http_url,
    required_str,
    to_number,
)


@dataclass(frozen=True)
class HttpConfig:
    url: str
    value_location: str
    headers: dict[str, str]


def parse_config(config: Config) -> HttpConfig:
    raw_headers = config.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise SourceError("headers must be a mapping of header names to values")
    headers: dict[str, str] = {}
    for key, value in raw_headers.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, str | int | float):
            raise SourceError(f"header {key!r} must have a string value")
        headers[key] = str(value)
    return HttpConfig(
        url=http_url(config, "url"),
        value_location=required_str(config, "valueLocation"),
        headers=headers,
    )


def parse_document(body: bytes) -> Any:
    """The JSON document of a response body; :class:`SourceError` if it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        snippet = " ".join(body[:80].decode("utf-8", errors="replace").split())
        raise SourceError(f"response is not valid JSON ({e}): {snippet!r}") from None


#: Distinct JSONPaths kept compiled. jsonpath-ng builds a PLY lexer and parser for every parse:
#: about 3 ms, which was three quarters of the operator's CPU with 300 ScaledApps polling.
COMPILED_PATHS = 4096


@functools.lru_cache(maxsize=COMPILED_PATHS)
def compile_path(value_location: str) -> Any:
    return parse_jsonpath(value_location)


def compile_checked(value_location: str) -> Any:
    """The compiled JSONPath; :class:`SourceError` naming the problem if it is not one."""
    try:
        return compile_path(value_location)
    except Exception as e:  # jsonpath-ng raises assorted lexer/parser errors (and sometimes plain Exception)
        raise SourceError(f"invalid valueLocation {value_location!r}: {e}") from None


def extract_value(doc: Any, value_location: str) -> float:
    """The single number at ``value_location`` (JSONPath) in ``doc``; :class:`SourceError` otherwise."""
    path = compile_checked(value_location)
    try:
        matches = path.find(doc)
    except Exception as e:  # e.g. a filter comparing incompatible types
        raise SourceError(f"valueLocation {value_location!r} could not be evaluated: {e}") from None
    if not matches:
        raise SourceError(f"valueLocation {value_location!r} matched nothing in the response")
    if len(matches) > 1:
        raise SourceError(
            f"valueLocation {value_location!r} matched {len(matches)} values, expected exactly one"
        )
    return to_number(matches[0].value, f"the value at {value_location!r}")


class HttpJsonScaler(fetch.HttpScaler[HttpConfig]):
    """``GET url``, one number at ``valueLocation``: a total for the workload (KEDA's metrics-api)."""

    type = "http"
    meaning = Meaning.TOTAL
    url_field = "url"

    def parse(self, config: Config, target_type: str | None) -> HttpConfig:
        parsed = parse_config(config)
        compile_checked(parsed.value_location)
        return parsed

    async def read(self, config: HttpConfig, ctx: SourceContext) -> float:
        headers = {"Accept": "application/json", **config.headers}
        response = await self.client.get(config.url, headers=headers)
        if not 200 <= response.status < 300:
            raise fetch.http_status_error(response.status, response.reason, response.body)
        return extract_value(parse_document(response.body), config.value_location)


SCALER = HttpJsonScaler()
describe = SCALER.describe
