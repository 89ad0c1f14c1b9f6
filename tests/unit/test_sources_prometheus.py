"""Pure parsing of Prometheus /api/v1/query responses into one number."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kopfscale.scaledapp.sources.base import SourceError
from kopfscale.scaledapp.sources.prometheus import describe, parse_config, parse_response, query_url


def ok(result_type: str, result: Any) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": result_type, "result": result}}).encode()


def sample(value: str, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1700000000.123, value]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (ok("vector", [sample("42", app="web")]), 42.0),
        (ok("vector", [sample("0.25")]), 0.25),
        (ok("vector", [sample("-3")]), -3.0),
        (ok("vector", [sample("1e3")]), 1000.0),
        (ok("scalar", [1700000000, "7"]), 7.0),
        (ok("scalar", [1700000000.5, "0"]), 0.0),
    ],
)
def test_one_number(body: bytes, expected: float) -> None:
    assert parse_response(200, body) == expected


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            200,
            ok("vector", [sample("1", pod="a"), sample("2", pod="b")]),
            "query returned 2 series, expected one number",
        ),
        (200, ok("vector", [sample("1", pod=p) for p in "abcde"]), "query returned 5 series"),
        (200, ok("vector", []), "no data (empty vector)"),
        (200, ok("vector", [sample("NaN")]), "expected a finite number"),
        (200, ok("vector", [sample("+Inf")]), "expected a finite number"),
        (200, ok("scalar", [1700000000, "-Inf"]), "expected a finite number"),
        (200, ok("scalar", [1700000000, "NaN"]), "expected a finite number"),
        (200, ok("vector", [sample("forty-two")]), "non-numeric string"),
        (200, ok("vector", [{"metric": {}, "histogram": [1, {"count": "3"}]}]), "native histogram"),
        (200, ok("vector", [{"metric": {}}]), "not a [timestamp, value] pair"),
        (200, ok("vector", ["oops"]), "sample is not an object"),
        (200, ok("vector", {"not": "a list"}), "vector result is not a list"),
        (200, ok("scalar", "7"), "not a [timestamp, value] pair"),
        (200, ok("matrix", [{"metric": {}, "values": [[1, "1"], [2, "2"]]}]), "range vector (matrix)"),
        (200, ok("string", [1700000000, "hello"]), "returned a string"),
        (200, ok("table", []), "unexpected resultType (not scalar, vector, matrix or string)"),
        (200, b'{"status": "success"}', "no 'data' object"),
        (200, b"<html>not prometheus</html>", "not a Prometheus API JSON object"),
        (200, b"", "not a Prometheus API JSON object"),
        (200, b"[1, 2]", "not a Prometheus API JSON object"),
        (200, b"\xff\xfe garbage", "not a Prometheus API JSON object"),
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"invalid parameter \\"query\\": parse error"}',
            "HTTP 400: bad_data (run the query in Prometheus to see its message)",
        ),
        (400, b'{"status":"error","errorType":"s3cr3t","error":"s3cr3t"}', "HTTP 400: query failed"),
        (
            422,
            b'{"status":"error","errorType":"execution","error":"many-to-many matching"}',
            "HTTP 422: execution",
        ),
        (503, b"Service Unavailable", "HTTP 503 Service Unavailable (no content type, 19 bytes)"),
        (502, b"", "HTTP 502"),
        (200, b'{"status":"error","errorType":"timeout","error":"query timed out"}', "HTTP 200: timeout"),
    ],
)
def test_errors(status: int, body: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=None) as excinfo:
        parse_response(status, body)
    assert message in str(excinfo.value)
    assert "s3cr3t" not in str(excinfo.value) and "parse error" not in str(excinfo.value)


def test_two_series_message_counts_the_series_without_quoting_their_labels() -> None:
    body = ok("vector", [sample("1", pod="a", app="web"), sample("2", pod="b", app="web")])
    with pytest.raises(SourceError) as excinfo:
        parse_response(200, body)
    assert (
        str(excinfo.value) == "query returned 2 series, expected one number; aggregate it, e.g. with sum(...)"
    )


def test_empty_vector_reads_as_zero_when_ignoring_null_values() -> None:
    assert parse_response(200, ok("vector", []), ignore_null_values=True) == 0.0


def test_ignore_null_values_does_not_hide_other_problems() -> None:
    with pytest.raises(SourceError, match="expected a finite number"):
        parse_response(200, ok("vector", [sample("NaN")]), ignore_null_values=True)
    with pytest.raises(SourceError, match="2 series"):
        parse_response(200, ok("vector", [sample("1", a="1"), sample("1", a="2")]), ignore_null_values=True)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"query": "up"}, "'serverAddress' is required"),
        ({"serverAddress": "prometheus:9090", "query": "up"}, "absolute http(s) URL"),
        ({"serverAddress": "ftp://prometheus:9090", "query": "up"}, "absolute http(s) URL"),
        ({"serverAddress": "http://prometheus:9090"}, "'query' is required"),
        ({"serverAddress": "http://prometheus:9090", "query": "  "}, "'query' is required"),
        ({"serverAddress": "http://p:9090", "query": "up", "ignoreNullValues": "yes"}, "ignoreNullValues"),
    ],
)
def test_config_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceError) as excinfo:
        parse_config(config)
    assert message in str(excinfo.value)


def test_config_and_url() -> None:
    cfg = parse_config({"serverAddress": "http://prometheus.monitoring:9090/", "query": "up", "timeout": 3})
    assert cfg.ignore_null_values is False
    assert query_url(cfg.server_address) == "http://prometheus.monitoring:9090/api/v1/query"
    assert query_url("https://h/prometheus") == "https://h/prometheus/api/v1/query"


def test_describe_hides_credentials() -> None:
    assert describe({"serverAddress": "http://prometheus.monitoring:9090"}) == (
        "prometheus http://prometheus.monitoring:9090"
    )
    assert (
        describe({"serverAddress": "https://user:s3cret@prom:9090/x"}) == "prometheus https://***@prom:9090/x"
    )
    assert describe({}) == "prometheus"
