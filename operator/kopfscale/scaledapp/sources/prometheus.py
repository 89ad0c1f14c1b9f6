"""``type: prometheus`` — one number from a PromQL instant query (like KEDA's prometheus scaler).

The query must yield exactly one number: a scalar, or an instant vector with exactly one sample.
An empty vector is an error unless ``ignoreNullValues: true``, in which case it reads as 0.
NaN and ±Inf are errors (a ratio over zero traffic is not a load signal).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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

QUERY_PATH = "/api/v1/query"


@dataclass(frozen=True)
class PrometheusConfig:
    server_address: str
    query: str
    ignore_null_values: bool


def parse_config(config: Config) -> PrometheusConfig:
    ignore = config.get("ignoreNullValues", False)
    if not isinstance(ignore, bool):
        raise SourceError(f"ignoreNullValues must be true or false, got {ignore!r}")
    return PrometheusConfig(
        server_address=http_url(config, "serverAddress"),
        query=required_str(config, "query"),
        ignore_null_values=ignore,
    )


def query_url(server_address: str) -> str:
    """The instant-query endpoint; ``serverAddress`` may carry a path prefix (``http://h/prometheus``)."""
    return server_address.rstrip("/") + QUERY_PATH


def parse_response(status: int, body: bytes, *, ignore_null_values: bool = False) -> float:
    """The single number of a ``/api/v1/query`` response; :class:`SourceError` for anything else."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, Mapping):
        if 200 <= status < 300:
            raise SourceError(f"HTTP {status} with a body that is not a Prometheus API JSON object")
        raise SourceError(f"HTTP {status}: {_snippet(body)}" if body.strip() else f"HTTP {status}")

    if doc.get("status") != "success" or not (200 <= status < 300):
        error_type = doc.get("errorType")
        error = doc.get("error")
        detail = ": ".join(str(part) for part in (error_type, error) if part) or "query failed"
        raise SourceError(f"HTTP {status}: {detail}")

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
            examples = ", ".join(_labels(sample) for sample in result[:3])
            more = ", …" if len(result) > 3 else ""
            raise SourceError(
                f"query returned {len(result)} series, expected one number "
                f"({examples}{more}); aggregate it, e.g. with sum(...)"
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
    raise SourceError(f"unexpected resultType {result_type!r}")


def _sample_value(pair: Any, what: str) -> float:
    # Prometheus encodes samples as [<unix time>, "<value as a string>"]: [1700000000.1, "42"], "NaN", "+Inf".
    if not isinstance(pair, list) or len(pair) != 2:
        raise SourceError(f"{what} is not a [timestamp, value] pair")
    return to_number(pair[1], "query result")


def _labels(sample: Any) -> str:
    metric = sample.get("metric") if isinstance(sample, Mapping) else None
    if not isinstance(metric, Mapping):
        return "{}"
    return "{" + ", ".join(f'{key}="{value}"' for key, value in sorted(metric.items())) + "}"


def _snippet(body: bytes) -> str:
    return " ".join(body[:200].decode("utf-8", errors="replace").split())


class PrometheusScaler(fetch.HttpScaler[PrometheusConfig]):
    """An instant query yielding one number: a total for the workload (KEDA's prometheus scaler)."""

    type = "prometheus"
    meaning = Meaning.TOTAL
    url_field = "serverAddress"

    def parse(self, config: Config, target_type: str | None) -> PrometheusConfig:
        return parse_config(config)

    async def read(self, config: PrometheusConfig, ctx: SourceContext) -> float:
        response = await self.client.get(
            query_url(config.server_address),
            params={"query": config.query},
            headers={"Accept": "application/json"},
        )
        return parse_response(response.status, response.body, ignore_null_values=config.ignore_null_values)


SCALER = PrometheusScaler()
describe = SCALER.describe
