"""``type: http`` — one number out of a JSON document served over HTTP (like KEDA's metrics-api scaler).

``GET url`` (with optional ``headers``, ``headersFrom``, ``basicAuth``, ``bearerToken``, ``tls``);
the body must be JSON; ``valueLocation`` is a JSONPath (jsonpath-ng, extended syntax: filters
like ``$.queues[?(@.name == "jobs")].depth`` work) that must match exactly one value, which must
be a number or a numeric string.

Evaluation is kept cheap for every tenant (docs/metric-sources.md, "Cost of valueLocation"): the
grammar refuses regular-expression filters (``=~``, whose backtracking has no bound) and
recursive descent inside filters at parse time; documents are at most 1 MiB; and a document
larger than ``evaluation.INLINE_BYTES`` is parsed and searched in a small thread pool, one evaluation
per ScaledApp at a time, so the event loop (watches, the liveness probe) never waits for it.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonpath_ng.ext.parser import parse as parse_jsonpath

from kopfscale.scaledapp.sources import credentials, fetch
from kopfscale.scaledapp.sources.base import (
    Askers,
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
    credentials: credentials.Credentials = field(default_factory=credentials.Credentials)


@dataclass(frozen=True)
class HttpRead:
    """One read resolved for a ScaledApp: the request and where the number is (``shared``'s key)."""

    request: fetch.Request
    value_location: str


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
        credentials=credentials.parse(config),
    )


def parse_document(body: bytes, content_type: str = "") -> Any:
    """The JSON document of a response body; :class:`SourceError` if it is not JSON.

    The error names the content type, the size and where parsing stopped, never body bytes.
    """
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        where = f"at line {e.lineno} column {e.colno}" if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        kind = content_type or "no content type"
        raise SourceError(f"response is not valid JSON ({kind}, {len(body)} bytes; {where})") from None
    except RecursionError:
        raise SourceError(f"response is nested too deeply to parse ({len(body)} bytes)") from None


#: Distinct JSONPaths kept compiled. jsonpath-ng builds a PLY lexer and parser for every parse:
#: about 3 ms, which was three quarters of the operator's CPU with 300 ScaledApps polling.
COMPILED_PATHS = 4096


@functools.lru_cache(maxsize=COMPILED_PATHS)
def compile_path(value_location: str) -> Any:
    return parse_jsonpath(value_location)


_FILTER_DESCENT = re.compile(r"\[\?[^\]]*\.\.")


def check_grammar(value_location: str) -> None:
    """Refuse the JSONPath features whose cost has no useful bound (see the module docstring)."""
    if "=~" in value_location:
        raise SourceError(
            f"valueLocation {value_location!r} uses a regular-expression filter (=~), which kopfscale "
            "does not evaluate (a regex can backtrack for minutes); compare with == instead"
        )
    if _FILTER_DESCENT.search(value_location):
        raise SourceError(
            f"valueLocation {value_location!r} uses recursive descent (..) inside a filter, which "
            "kopfscale does not evaluate (its cost grows with the square of the document)"
        )


def compile_checked(value_location: str) -> Any:
    """The compiled JSONPath; :class:`SourceError` naming the problem if it is not one."""
    check_grammar(value_location)
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


def evaluate(body: bytes, content_type: str, value_location: str) -> float:
    """Parse and search one response (pure, CPU only: may run in a worker thread)."""
    return extract_value(parse_document(body, content_type), value_location)


class HttpJsonScaler(fetch.HttpScaler[HttpConfig]):
    """``GET url``, one number at ``valueLocation``: a total for the workload (KEDA's metrics-api)."""

    type = "http"
    meaning = Meaning.TOTAL
    url_field = "url"

    def parse(self, config: Config, target_type: str | None) -> HttpConfig:
        parsed = parse_config(config)
        compile_checked(parsed.value_location)
        return parsed

    async def resolve(self, config: HttpConfig, ctx: SourceContext) -> HttpRead:
        request = await self.request(ctx, config.credentials, config.url, headers=config.headers)
        return HttpRead(request, config.value_location)

    async def perform(self, resolved: HttpRead, askers: Askers) -> float:
        response = await self.send(resolved.request)
        if not 200 <= response.status < 300:
            raise SourceError(response.described)
        body, content_type = response.body, response.content_type
        return await self.evaluate(len(body), askers, evaluate, body, content_type, resolved.value_location)

    async def close(self) -> None:
        await super().close()
        self.evaluate.close()


SCALER = HttpJsonScaler()
describe = SCALER.describe
