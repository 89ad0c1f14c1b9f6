"""The http source against a real local HTTP server."""

from __future__ import annotations

import json
from typing import Any

from kopfscale.scaledapp.sources import MetricReading

from .servers import Reply, StubServer, free_port
from .util import read_once, read_timed


def spec(url: str, location: str = "$.queues.jobs.depth", **extra: Any) -> dict[str, Any]:
    return {
        "name": "queue",
        "type": "http",
        "http": {"url": url, "valueLocation": location, **extra},
        "target": {"type": "AverageValue", "value": 20},
    }


def test_reads_the_value_and_sends_headers(stub_server: StubServer) -> None:
    url = stub_server.reply("/stats", Reply(body=json.dumps({"queues": {"jobs": {"depth": 42}}}).encode()))
    reading = read_once(spec(url, headers={"X-Token": "abc"}))
    assert reading == MetricReading(name="queue", value=42.0)
    assert stub_server.requests[-1].headers["X-Token"] == "abc"


def test_numeric_string_and_changing_values(stub_server: StubServer) -> None:
    url = stub_server.reply("/stats", Reply(body=b'{"queues": {"jobs": {"depth": "7.5"}}}'))
    assert read_once(spec(url)).value == 7.5
    stub_server.reply("/stats", Reply(body=b'{"queues": {"jobs": {"depth": 0}}}'))
    assert read_once(spec(url)).value == 0.0


def test_slow_server_times_out(stub_server: StubServer) -> None:
    url = stub_server.reply("/stats", Reply(body=b'{"queues": {"jobs": {"depth": 1}}}', delay=10))
    reading, elapsed = read_timed(spec(url, timeout=0.5))
    assert reading == MetricReading(name="queue", error=f"http {url}: timed out after 0.5s")
    assert elapsed < 2.5


def test_server_error_status(stub_server: StubServer) -> None:
    url = stub_server.reply(
        "/stats", Reply(status=500, body=b"database is on fire", content_type="text/plain")
    )
    reading = read_once(spec(url))
    assert reading.error == f"http {url}: HTTP 500 Internal Server Error (text/plain, 19 bytes)"


def test_not_found(stub_server: StubServer) -> None:
    reading = read_once(spec(stub_server.url + "/nope"))
    assert reading.error is not None and "HTTP 404 Not Found" in reading.error


def test_garbage_body(stub_server: StubServer) -> None:
    url = stub_server.reply("/stats", Reply(body=b"<html>maintenance</html>", content_type="text/html"))
    reading = read_once(spec(url))
    assert reading.error is not None
    assert reading.error.startswith(f"http {url}: response is not valid JSON")


def test_missing_path_and_multiple_matches(stub_server: StubServer) -> None:
    url = stub_server.reply("/stats", Reply(body=b'{"queues": {"a": {"depth": 1}, "b": {"depth": 2}}}'))
    missing = read_once(spec(url))
    assert missing.error == f"http {url}: valueLocation '$.queues.jobs.depth' matched nothing in the response"
    many = read_once(spec(url, "$.queues.*.depth"))
    assert (
        many.error == f"http {url}: valueLocation '$.queues.*.depth' matched 2 values, expected exactly one"
    )


def test_oversized_body_is_refused(stub_server: StubServer) -> None:
    url = stub_server.reply("/stats", Reply(body=b'{"pad": "' + b"x" * (5 * 1024 * 1024) + b'", "v": 1}'))
    reading = read_once(spec(url, "$.v"))
    assert reading.error is not None and "response is too large" in reading.error


def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}/stats"
    reading = read_once(spec(url))
    assert reading.error is not None
    assert reading.error.startswith(f"http {url}: request failed: Cannot connect to host 127.0.0.1")
