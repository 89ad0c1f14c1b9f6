"""Traces as a user writes them (CSV) or exports them (Prometheus query_range JSON)."""

from __future__ import annotations

import datetime
import json

import pytest

from kopfscale.simulate.errors import InputError
from kopfscale.simulate.trace import parse_csv, parse_prometheus


def test_csv_in_seconds_with_an_empty_cell_as_a_failed_read() -> None:
    trace = parse_csv("time,rps,queue\n0,10,1\n15,,2\n30,30.5,\n")
    assert trace.times == (0.0, 15.0, 30.0)
    assert trace.columns == {"rps": (10.0, None, 30.5), "queue": (1.0, 2.0, None)}
    assert not trace.absolute


def test_csv_in_rfc3339_starts_at_its_first_row() -> None:
    trace = parse_csv("time,rps\n2026-01-05T08:00:00Z,1\n2026-01-05T08:00:30+00:00,2\n")
    assert trace.absolute
    assert trace.start == datetime.datetime(2026, 1, 5, 8, 0, tzinfo=datetime.UTC)
    assert trace.times == (0.0, 30.0)


def test_a_tick_reads_the_last_row_at_or_before_it() -> None:
    trace = parse_csv("time,rps\n0,1\n20,2\n")
    assert [trace.index_at(t) for t in (0, 15, 20, 35)] == [0, 0, 1, 1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty trace"),
        ("when,rps\n0,1\n", "trace.csv:1: the header must be 'time,<metric name>,...'"),
        ("time,rps,rps\n0,1,2\n", "trace.csv:1: column names must be unique"),
        ("time,rps\n", "has a header but no rows"),
        ("time,rps\n0,1\n0,2\n", "trace.csv:3: time '0': times must be strictly increasing"),
        ("time,rps\n0,1\n15,lots\n", "trace.csv:3: column 'rps': not a number: 'lots'"),
        ("time,rps\n0,1\n15,1,2\n", "trace.csv:3: 3 cells, the header has 2 columns"),
        ("time,rps\n0,1\n2026-01-05T08:00:00Z,1\n", "trace.csv:3: time '2026-01-05T08:00:00Z': not a number"),
        ("time,rps\n-5,1\n", "trace.csv:2: time '-5': seconds from the start must be a finite number >= 0"),
    ],
)
def test_bad_csv_names_the_line(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_csv(text, "trace.csv")
    assert message in str(caught.value)


def prometheus(values: list[list[object]], series: int = 1) -> str:
    result = [{"metric": {"job": "web"}, "values": values}] * series
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})


def test_prometheus_matrix_with_nan_and_a_gap() -> None:
    text = prometheus([[1000, "1"], [1015, "NaN"], [1030, "3"], [1075, "4"]])
    trace = parse_prometheus(text, "rps", "q.json")
    assert trace.absolute
    assert trace.start == datetime.datetime.fromtimestamp(1000, datetime.UTC)
    # 1030 -> 1075 skips two 15 s steps: the first missing step reads as a failed read.
    assert trace.times == (0.0, 15.0, 30.0, 45.0, 75.0)
    assert trace.columns == {"rps": (1.0, None, 3.0, None, 4.0)}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "q.json: not JSON"),
        (
            json.dumps({"status": "error", "error": "bad query"}),
            "not a successful Prometheus response: bad query",
        ),
        (
            json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}),
            "data.resultType must be 'matrix'",
        ),
        (prometheus([[1, "1"]], series=2), "data.result has 2 series"),
        (prometheus([[1, "x"]]), "q.json: data.result[0].values[0]: not a number: 'x'"),
    ],
)
def test_bad_prometheus_responses(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_prometheus(text, "rps", "q.json")
    assert message in str(caught.value)
