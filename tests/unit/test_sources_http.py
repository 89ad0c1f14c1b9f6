"""Pure parsing for the http source: JSON body + valueLocation (JSONPath) → one number."""

from __future__ import annotations

from typing import Any

import pytest

from kopfscale.scaledapp.sources.base import SourceError
from kopfscale.scaledapp.sources.http_json import describe, extract_value, parse_config, parse_document

DOC: dict[str, Any] = {
    "queues": {
        "jobs": {"depth": 17, "workers": 3},
        "mail": {"depth": "4.5", "workers": 1},
        "flag": {"depth": True},
        "nothing": {"depth": None},
        "text": {"depth": "many"},
        "nan": {"depth": "NaN"},
        "inf": {"depth": "inf"},
        "nested": {"depth": {"value": 1}},
        "listy": {"depth": [1]},
    },
    "items": [{"name": "a", "load": 0.5}, {"name": "b", "load": 1.5}],
    "total": 2,
    "big": 1e300,
}


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("$.queues.jobs.depth", 17.0),
        ("queues.jobs.depth", 17.0),
        ("$.queues.mail.depth", 4.5),  # numeric strings are numbers
        ("$.items[1].load", 1.5),
        ("$.items[-1].load", 1.5),
        ("$.items[?(@.name == 'a')].load", 0.5),  # extended syntax: filters
        ("$.items[?name = 'b'].load", 1.5),
        ("$.total", 2.0),
        ("$.big", 1e300),
        ("$.items.`len`", 2.0),
    ],
)
def test_one_number(location: str, expected: float) -> None:
    assert extract_value(DOC, location) == expected


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("$.queues.missing.depth", "matched nothing"),
        ("$.nope", "matched nothing"),
        ("$.items[*].load", "matched 2 values, expected exactly one"),
        ("$..depth", "matched 9 values"),
        ("$.queues.flag.depth", "is a boolean (true)"),
        ("$.queues.nothing.depth", "is null"),
        ("$.queues.text.depth", "non-numeric string (4 characters)"),
        ("$.queues.nan.depth", "expected a finite number"),
        ("$.queues.inf.depth", "expected a finite number"),
        ("$.queues.nested.depth", "is an object, expected a number"),
        ("$.queues.listy.depth", "is a list, expected a number"),
        ("$.queues", "is an object"),
        ("$[", "invalid valueLocation '$['"),
        ("$.queues.jobs.depth)", "invalid valueLocation"),
    ],
)
def test_errors(location: str, message: str) -> None:
    with pytest.raises(SourceError) as excinfo:
        extract_value(DOC, location)
    assert message in str(excinfo.value)


@pytest.mark.parametrize(("doc", "expected"), [(42, 42.0), ("3", 3.0), ([5], 5.0)])
def test_documents_that_are_not_objects(doc: Any, expected: float) -> None:
    location = "$[0]" if isinstance(doc, list) else "$"
    assert extract_value(doc, location) == expected


def test_parse_document() -> None:
    assert parse_document(b'{"a": 1}') == {"a": 1}
    for garbage in (b"", b"<html>oops</html>", b'{"a": ', b"\xff\xfe\x00"):
        with pytest.raises(SourceError, match="not valid JSON"):
            parse_document(garbage)


def test_nan_literal_in_json_is_rejected_as_a_value() -> None:
    with pytest.raises(SourceError, match="finite"):
        extract_value(parse_document(b'{"v": NaN}'), "$.v")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"valueLocation": "$.a"}, "'url' is required"),
        ({"url": "queue-stats/stats", "valueLocation": "$.a"}, "absolute http(s) URL"),
        ({"url": "http://q/stats"}, "'valueLocation' is required"),
        ({"url": "http://q/stats", "valueLocation": "$.a", "headers": ["X-Token: abc"]}, "headers must be"),
        ({"url": "http://q/stats", "valueLocation": "$.a", "headers": {"X-Token": {"a": 1}}}, "string value"),
    ],
)
def test_config_errors(config: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceError) as excinfo:
        parse_config(config)
    assert message in str(excinfo.value)


def test_config() -> None:
    cfg = parse_config(
        {
            "url": "http://queue-stats.default/stats",
            "valueLocation": "$.queues.jobs.depth",
            "headers": {"X-N": 1},
        }
    )
    assert cfg.url == "http://queue-stats.default/stats"
    assert cfg.headers == {"X-N": "1"}
    assert (
        describe({"url": "http://u:p@queue-stats.default/stats"})
        == "http http://***@queue-stats.default/stats"
    )
