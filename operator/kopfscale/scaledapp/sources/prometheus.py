"""``type: prometheus`` — one number from a PromQL instant query (like KEDA's prometheus scaler).

The query must yield exactly one number: a scalar, or an instant vector with exactly one sample.
An empty vector is an error unless ``ignoreNullValues: true``, in which case it reads as 0.
NaN and ±Inf are errors (a ratio over zero traffic is not a load signal).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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

QUERY_PATH = "/api/v1/query"


@dataclass(frozen=True)
class PrometheusConfig:
    server_address: str
    query: str
    ignore_null_values: bool
    credentials: credentials.Credentials = field(default_factory=credentials.Credentials)


@dataclass(frozen=True)
class PrometheusRead:
    """One query resolved for a ScaledApp: the request and how to read it (``shared``'s key)."""

    request: fetch.Request
    ignore_null_values: bool


def parse_config(config: Config) -> PrometheusConfig:
    ignore = config.get("ignoreNullValues", False)
    if not isinstance(ignore, bool):
        raise SourceError(f"ignoreNullValues must be true or false, got {ignore!r}")
    return PrometheusConfig(
        server_address=http_url(config, "serverAddress"),
        query=required_str(config, "query"),
        ignore_null_values=ignore,
        credentials=credentials.parse(config),
    )


def query_url(server_address: str) -> str:
    """The instant-query endpoint; ``serverAddress`` may carry a path prefix (``http://h/prometheus``)."""
    return server_address.rstrip("/") + QUERY_PATH


#: The errorType values of the Prometheus HTTP API: shown as they are, being from a fixed set
#: (the free-text ``error`` beside it is the server's text, and never shown).
ERROR_TYPES = frozenset(
    {"bad_data", "execution", "timeout", "canceled", "internal", "unavailable", "not_found", "not_acceptable"}
)


def parse_response(
    status: int, body: bytes, ignore_null_values: bool = False, content_type: str = ""
) -> float:
    """The single number of a ``/api/v1/query`` response; :class:`SourceError` for anything else.

    Errors never quote the response (docs/deploy.md, "Tenant model"): the status, the content
    type and size, and Prometheus' errorType when it is one of the API's own.
    """
    shape = f"{content_type or 'no content type'}, {len(body)} bytes"
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        doc = None
    if not isinstance(doc, Mapping):
        if 200 <= status < 300:
            raise SourceError(f"HTTP {status} with a body that is not a Prometheus API JSON object ({shape})")
        raise SourceError(fetch.http_status_error(status, None, body, content_type).args[0])

    if doc.get("status") != "success" or not (200 <= status < 300):
        error_type = doc.get("errorType")
        if error_type in ERROR_TYPES:
            raise SourceError(f"HTTP {status}: {error_type} (run the query in Prometheus to see its message)")
        raise SourceError(f"HTTP {status}: query failed ({shape})")

    data = doc.get("data")
    if not isinstance(data, Mapping):
        raise SourceError("response has no 'data' object")
    result_type = data.get("resultType")
    result = data.get("result")

    if result_type == "scalar":
        return _sample_value(result, "scalar result")
    if result_type == "vector":
        if not isinstance(result, list):
            raise SourceError("vector result is not a list")
        if not result:
            if ignore_null_values:
                return 0.0
            raise SourceError(
                "query returned no data (empty vector), expected one number; "
                "set ignoreNullValues: true to read an empty result as 0"
            )
        if len(result) > 1:
            raise SourceError(
                f"query returned {len(result)} series, expected one number; aggregate it, e.g. with sum(...)"
            )
        sample = result[0]
        if not isinstance(sample, Mapping):
            raise SourceError("vector sample is not an object")
        if "value" not in sample and "histogram" in sample:
            raise SourceError("query returned a native histogram sample, expected a number")
        return _sample_value(sample.get("value"), "sample value")
    if result_type == "matrix":
        raise SourceError("query returned a range vector (matrix), expected one number; use an instant query")
    if result_type == "string":
        raise SourceError("query returned a string, expected one number")
    raise SourceError("unexpected resultType (not scalar, vector, matrix or string)")


def _sample_value(pair: Any, what: str) -> float:
    # Prometheus encodes samples as [<unix time>, "<value as a string>"]: [1700000000.1, "42"], "NaN", "+Inf".
    if not isinstance(pair, list) or len(pair) != 2:
        raise SourceError(f"{what} is not a [timestamp, value] pair")
    return to_number(pair[1], "query result")


class PrometheusScaler(fetch.HttpScaler[PrometheusConfig]):
    """An instant query yielding one number: a total for the workload (KEDA's prometheus scaler)."""

    type = "prometheus"
    meaning = Meaning.TOTAL
    url_field = "serverAddress"

    def parse(self, config: Config, target_type: str | None) -> PrometheusConfig:
        return parse_config(config)

    async def resolve(self, config: PrometheusConfig, ctx: SourceContext) -> PrometheusRead:
        request = await self.request(
            ctx, config.credentials, query_url(config.server_address), params={"query": config.query}
        )
        return PrometheusRead(request, config.ignore_null_values)

    async def perform(self, resolved: PrometheusRead, askers: Askers) -> float:
        response = await self.send(resolved.request)
        return await self.evaluate(
            len(response.body),
            askers,
            parse_response,
            response.status,
            response.body,
            resolved.ignore_null_values,
            response.content_type,
        )

    async def close(self) -> None:
        await super().close()
        self.evaluate.close()


SCALER = PrometheusScaler()
describe = SCALER.describe
