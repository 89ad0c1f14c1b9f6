"""The prometheus source against a real Prometheus scraping a local exporter every second."""

from __future__ import annotations

from typing import Any

from kopfscale.scaledapp.sources import MetricReading

from ...helpers import wait_for
from .servers import Prometheus, free_port
from .util import read_once

SCRAPED_WITHIN = 30.0  # seconds: scrape_interval is 1s, but the box may be busy


def spec(server: str, query: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "rps",
        "type": "prometheus",
        "prometheus": {"serverAddress": server, "query": query, **extra},
        "target": {"type": "AverageValue", "value": 50},
        "activationThreshold": 5,
    }


def test_reads_the_gauge_once_scraped(prometheus: Prometheus) -> None:
    prometheus.exporter.set("kopfscale_test_requests", 42, case="answer")
    query = 'kopfscale_test_requests{case="answer"}'
    wait_for(
        lambda: read_once(spec(prometheus.url, query)).value == 42,
        timeout=SCRAPED_WITHIN,
        what="Prometheus to scrape the gauge",
    )
    assert read_once(spec(prometheus.url, query)) == MetricReading(name="rps", value=42.0)

    prometheus.exporter.set("kopfscale_test_requests", 43.5, case="answer")
    wait_for(
        lambda: read_once(spec(prometheus.url, query)).value == 43.5, timeout=SCRAPED_WITHIN, what="43.5"
    )


def test_two_series_are_an_error_until_aggregated(prometheus: Prometheus) -> None:
    prometheus.exporter.set("kopfscale_test_requests", 1, case="pair", pod="a")
    prometheus.exporter.set("kopfscale_test_requests", 2, case="pair", pod="b")
    query = 'kopfscale_test_requests{case="pair"}'

    def two_series_error() -> MetricReading | None:
        reading = read_once(spec(prometheus.url, query))
        return reading if reading.error and "2 series" in reading.error else None

    reading = wait_for(two_series_error, timeout=SCRAPED_WITHIN, what="both series to be scraped")
    assert reading is not None
    assert reading.value is None
    assert reading.error is not None
    assert reading.error == (
        f"prometheus {prometheus.url}: query returned 2 series, expected one number; "
        "aggregate it, e.g. with sum(...)"
    )
    assert 'pod="a"' not in reading.error  # label values are the server's data: never echoed
    assert read_once(spec(prometheus.url, f"sum({query})")).value == 3.0


def test_bad_query(prometheus: Prometheus) -> None:
    reading = read_once(spec(prometheus.url, "sum(kopfscale_test_requests"))
    assert reading.error is not None
    assert reading.error == (
        f"prometheus {prometheus.url}: HTTP 400: bad_data (run the query in Prometheus to see its message)"
    )


def test_empty_result_and_ignore_null_values(prometheus: Prometheus) -> None:
    query = 'kopfscale_test_requests{case="never-set"}'
    empty = read_once(spec(prometheus.url, query))
    assert empty.error is not None and "query returned no data (empty vector)" in empty.error
    assert read_once(spec(prometheus.url, query, ignoreNullValues=True)) == MetricReading(
        name="rps", value=0.0
    )


def test_scalar_and_nan(prometheus: Prometheus) -> None:
    assert read_once(spec(prometheus.url, "scalar(vector(7))")).value == 7.0
    nan = read_once(spec(prometheus.url, "0/0"))
    assert nan.error == f"prometheus {prometheus.url}: query result is 'NaN', expected a finite number"


def test_range_vector_is_rejected(prometheus: Prometheus) -> None:
    prometheus.exporter.set("kopfscale_test_requests", 1, case="range")
    reading = read_once(spec(prometheus.url, 'kopfscale_test_requests{case="range"}[1m]'))
    assert reading.error is not None and "range vector (matrix)" in reading.error


def test_server_down() -> None:
    server = f"http://127.0.0.1:{free_port()}"
    reading = read_once(spec(server, "up"))
    assert reading.error is not None
    assert reading.error.startswith(f"prometheus {server}: request failed: Cannot connect to host")
