"""Tenant safety of the metric sources, pure parts: redaction, the JSONPath grammar, error texts."""

from __future__ import annotations

import pytest

from kopfscale.scaledapp.sources import credentials, fetch, http_json, prometheus
from kopfscale.scaledapp.sources.base import SourceError, redact_url

SECRET = "hunter2"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:hunter2@host/x", "http://***@host/x"),
        ("http://user:hunter2@host:8080/x", "http://***@host:8080/x"),
        ("http://hunter2@host/x", "http://***@host/x"),
        ("http://user:hunter2@[::1]:8080/x", "http://***@[::1]:8080/x"),
        ("http://user:hunter2@host:99999/x", "http://***@host:99999/x"),  # a port urlsplit refuses
        ("http://user:hunter2@[::1/x", "http://***@[::1/x"),  # an unclosed bracket
        ("http://user:hunter2@bad host/x", "http://***@bad host/x"),
        ("http://us@er:hunter2@host/x", "http://***@host/x"),  # '@' in the user info
        ("//user:hunter2@host/x", "//***@host/x"),
        ("user:hunter2@host/x", "user:***@host/x"),  # no scheme: still hidden
        ("http://host/x?token=hunter2&n=1", "http://host/x?token=***&n=1"),
        ("http://host/x?api_key=hunter2", "http://host/x?api_key=***"),
        ("http://host/x?X-Amz-Signature=hunter2", "http://host/x?X-Amz-Signature=***"),
        ("http://host/x?password=hunter2#frag", "http://host/x?password=***#frag"),
        ("http://host/x?page=2", "http://host/x?page=2"),
        ("http://host/path@x", "http://host/path@x"),  # an '@' in the path is not user info
    ],
)
def test_credentials_in_urls_are_redacted_whatever_the_shape(url: str, shown: str) -> None:
    redacted = redact_url(url)
    assert SECRET not in redacted
    assert redacted == shown


@pytest.mark.parametrize(
    ("location", "complaint"),
    [
        ("$.items[?(@.name =~ '(a+)+$')].load", "regular-expression filter (=~)"),
        ('$[?(@.x =~ "^a")]', "regular-expression filter"),
        ("$..[?(@..x == 1)]", "recursive descent (..) inside a filter"),
        ("$.a[?(@..b)]", "recursive descent (..) inside a filter"),
    ],
)
def test_expensive_jsonpath_features_are_refused_when_the_spec_is_parsed(
    location: str, complaint: str
) -> None:
    with pytest.raises(
        SourceError, match=complaint.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        http_json.SCALER.parse({"url": "http://h/x", "valueLocation": location}, "AverageValue")


@pytest.mark.parametrize("location", ["$..depth", "$.items[?(@.name == 'a')].load", "$.a..b"])
def test_bounded_jsonpath_features_stay(location: str) -> None:
    http_json.SCALER.parse({"url": "http://h/x", "valueLocation": location}, "AverageValue")


def test_errors_describe_the_response_never_quote_it() -> None:
    marker = b"MARKER-7f3a"
    with pytest.raises(SourceError) as e1:
        http_json.parse_document(b"<html>" + marker + b"</html>", "text/html")
    assert str(e1.value) == "response is not valid JSON (text/html, 24 bytes; at line 1 column 1)"
    with pytest.raises(SourceError) as e2:
        http_json.extract_value({"v": marker.decode()}, "$.v")
    assert "MARKER" not in str(e2.value) and "string (11 characters)" in str(e2.value)
    response = fetch.Response(500, fetch.standard_reason(500), "text/plain", marker)
    assert response.described == "HTTP 500 Internal Server Error (text/plain, 11 bytes)"
    assert fetch.standard_reason(599) is None
    with pytest.raises(SourceError) as e3:
        prometheus.parse_response(
            500, b'{"status":"error","error":"' + marker + b'"}', False, "application/json"
        )
    assert "MARKER" not in str(e3.value)
    with pytest.raises(SourceError) as e4:
        http_json.parse_document(b"[" * 100_000 + b"]" * 100_000, "application/json")
    assert "nested too deeply" in str(e4.value) or "not valid JSON" in str(e4.value)


@pytest.mark.parametrize(
    ("block", "complaint"),
    [
        ({"bearerToken": {"value": "t"}}, "bearerToken must come from a Secret"),
        (
            {"basicAuth": {"username": {"value": "u"}, "password": {"value": "p"}}},
            "basicAuth.password must come from a Secret",
        ),
        (
            {"basicAuth": {"username": {"value": "u", "valueFrom": {}}, "password": {}}},
            "exactly one of value and valueFrom",
        ),
        (
            {"headersFrom": [{"name": "X-Key", "valueFrom": {"secretKeyRef": {"name": "s"}}}]},
            "needs a name and a key",
        ),
        (
            {
                "bearerToken": {"valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                "basicAuth": {
                    "username": {"value": "u"},
                    "password": {"valueFrom": {"secretKeyRef": {"name": "s", "key": "p"}}},
                },
            },
            "not both",
        ),
    ],
)
def test_credential_blocks_are_checked_with_the_spec(block: dict[str, object], complaint: str) -> None:
    with pytest.raises(SourceError, match=complaint):
        credentials.parse(block)


def test_credentials_resolve_from_secrets_into_headers() -> None:
    import asyncio
    import base64

    class Cache(credentials.SecretCache):
        async def get(self, namespace: str, ref: credentials.SecretRef) -> str:
            assert namespace == "team-a"
            return {"key": "k3y", "password": "pa55", "token": " t0k \n"}[ref.key]

    ref = {"secretKeyRef": {"name": "creds", "key": "key"}}
    creds = credentials.parse(
        {
            "headersFrom": [{"name": "X-Api-Key", "valueFrom": ref}],
            "basicAuth": {
                "username": {"value": "bot"},
                "password": {"valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            },
        }
    )
    headers = asyncio.run(credentials.resolve(creds, "team-a", Cache()))
    assert headers["X-Api-Key"] == "k3y"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"bot:pa55").decode()
    bearer = credentials.parse(
        {"bearerToken": {"valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}}
    )
    assert asyncio.run(credentials.resolve(bearer, "team-a", Cache())) == {"Authorization": "Bearer t0k"}
