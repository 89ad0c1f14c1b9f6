"""read_metric(): dispatch by type, timeouts, and "never raises" — without any server."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import pytest

from kopfscale.kube import ApiError
from kopfscale.scaledapp.sources import (
    DEFAULT_TIMEOUT,
    REGISTRY,
    Meaning,
    MetricReading,
    Scaler,
    SourceContext,
    SourceError,
    opened,
    read_metric,
    resource,
)

MONDAY_NOON_BERLIN = datetime.datetime(2024, 3, 4, 11, 0, tzinfo=datetime.UTC)


def read(
    spec: Any,
    *,
    now: datetime.datetime = MONDAY_NOON_BERLIN,
    selector: str | None = "app=web",
) -> MetricReading:
    async def main() -> MetricReading:
        async with opened():
            ctx = SourceContext(namespace="default", pod_selector=selector, now=lambda: now)
            return await read_metric(spec, ctx)

    return asyncio.run(main())


BUSINESS_HOURS = {
    "name": "business-hours",
    "type": "cron",
    "cron": {
        "timezone": "Europe/Berlin",
        "start": "0 8 * * 1-5",
        "end": "0 18 * * 1-5",
        "desiredReplicas": 3,
    },
}


def test_cron_through_read_metric() -> None:
    assert read(BUSINESS_HOURS) == MetricReading(name="business-hours", value=3.0)
    evening = datetime.datetime(2024, 3, 4, 19, 0, tzinfo=datetime.UTC)
    assert read(BUSINESS_HOURS, now=evening) == MetricReading(name="business-hours", value=0.0)


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (
            {"name": "x", "type": "kafka", "kafka": {}},
            "unknown metric type 'kafka', expected one of: cron, http, ",
        ),
        ({"name": "x"}, "unknown metric type None"),
        ({"name": "x", "type": "cron"}, "cron: the 'cron' section is missing or is not a mapping"),
        (
            {"name": "x", "type": "cron", "cron": "0 8 * * *"},
            "the 'cron' section is missing or is not a mapping",
        ),
        (
            {"name": "x", "type": "cron", "cron": {**BUSINESS_HOURS["cron"], "timezone": "Nowhere/Land"}},  # type: ignore[dict-item]
            "cron [0 8 * * 1-5, 0 18 * * 1-5) Nowhere/Land: unknown timezone 'Nowhere/Land'",
        ),
        (
            {
                "name": "x",
                "type": "prometheus",
                "prometheus": {"serverAddress": "http://p:9090", "query": "up", "timeout": 0},
            },
            "prometheus http://p:9090: timeout must be a positive number of seconds, got 0",
        ),
        (
            {
                "name": "x",
                "type": "http",
                "http": {"url": "http://q/", "valueLocation": "$.a", "timeout": "3s"},
            },
            "http http://q/: timeout must be a positive number",
        ),
    ],
)
def test_configuration_errors_become_readings(spec: Any, error: str) -> None:
    reading = read(spec)
    assert reading.value is None
    assert reading.error is not None and error in reading.error, reading.error
    assert reading.name == "x"


@pytest.mark.parametrize("garbage", [None, 42, "rps", ["name", "rps"], {"type": {"nested": 1}}, {"name": 7}])
def test_garbage_specs_never_raise(garbage: Any) -> None:
    reading = read(garbage)
    assert reading.value is None and reading.error


def test_resource_without_a_pod_selector() -> None:
    spec = {"name": "cpu", "type": "resource", "resource": {"name": "cpu"}, "target": {"type": "Utilization"}}
    reading = read(spec, selector=None)
    assert reading.error == "resource cpu: the workload has no pod selector to find its pods by"


class FakeScaler(Scaler[Mapping[str, Any]]):
    """A source type registered by a test: it reads whatever ``behave`` does."""

    meaning = Meaning.TOTAL

    def __init__(self, label: str, behave: Callable[[], Any]) -> None:
        self.type, self.label, self.behave = label, label, behave  # type: ignore[misc]

    def parse(self, config: Mapping[str, Any], target_type: str | None) -> Mapping[str, Any]:
        return config

    def describe(self, config: Mapping[str, Any]) -> str:
        return self.label

    async def read(self, config: Mapping[str, Any], ctx: SourceContext) -> float:
        result = self.behave()
        return float(await result) if asyncio.iscoroutine(result) else float(result)


def slow_source(delay: float, value: float = 1.0) -> FakeScaler:
    async def slow() -> float:
        await asyncio.sleep(delay)
        return value

    return FakeScaler("slow", slow)


def failing_source(exc: BaseException | Callable[[], float]) -> FakeScaler:
    def fail() -> float:
        if isinstance(exc, BaseException):
            raise exc
        return exc()

    return FakeScaler("failing", fail)


def test_timeout_is_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "slow", slow_source(5.0))
    started = time.monotonic()
    reading = read({"name": "s", "type": "slow", "slow": {"timeout": 0.2}})
    elapsed = time.monotonic() - started
    assert reading == MetricReading(name="s", error="slow: timed out after 0.2s")
    assert elapsed < 2.0


def test_default_timeout_is_three_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "slow", slow_source(0.05, value=7))
    assert read({"name": "s", "type": "slow", "slow": {}}) == MetricReading(name="s", value=7.0)
    assert DEFAULT_TIMEOUT == 3.0


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        (SourceError("boom"), "failing: boom"),
        (RuntimeError("bug"), "failing: unexpected RuntimeError: bug"),
        (aiohttp.ClientConnectionError("refused"), "failing: request failed: refused"),
        (lambda: float("nan"), "failing: read a non-finite value nan"),
    ],
)
def test_failures_never_raise(monkeypatch: pytest.MonkeyPatch, behaviour: Any, error: str) -> None:
    monkeypatch.setitem(REGISTRY, "failing", failing_source(behaviour))
    assert read({"name": "f", "type": "failing", "failing": {}}) == MetricReading(name="f", error=error)


# --- resource through read_metric, against a recorded metrics.k8s.io response. ---------------

RECORDED_POD_METRICS = {
    "kind": "PodMetricsList",
    "apiVersion": "metrics.k8s.io/v1beta1",
    "metadata": {},
    "items": [
        {
            "metadata": {"name": "web-7d4b9c-abcde", "namespace": "default", "labels": {"app": "web"}},
            "timestamp": "2024-03-04T11:59:50Z",
            "window": "10.383s",
            "containers": [{"name": "web", "usage": {"cpu": "182340521n", "memory": "41232Ki"}}],
        },
        {
            "metadata": {"name": "web-7d4b9c-fghij", "namespace": "default", "labels": {"app": "web"}},
            "timestamp": "2024-03-04T11:59:52Z",
            "window": "11.2s",
            "containers": [{"name": "web", "usage": {"cpu": "97659479n", "memory": "38912Ki"}}],
        },
    ],
}

RECORDED_PODS = {
    "kind": "PodList",
    "apiVersion": "v1",
    "metadata": {"resourceVersion": "1234"},
    "items": [
        {
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "web:1",
                        "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}},
                    }
                ]
            },
            "status": {
                "phase": "Running",
                "startTime": "2024-03-04T10:00:00Z",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2024-03-04T10:00:12Z"}
                ],
            },
        }
        for name in ("web-7d4b9c-abcde", "web-7d4b9c-fghij")
    ],
}


class FakeTransport:
    """The resource scaler's transport, answering with the recorded responses (or failing)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, str, Any, Any]] = []
        self.error = error

    def request(self, method: str, path: str, *, query: Any = None, timeout: Any = None, **_: Any) -> Any:
        self.calls.append((method, path, query, timeout))
        if path.startswith("/apis/metrics.k8s.io/"):
            if self.error is not None:
                raise self.error
            return RECORDED_POD_METRICS
        return json.loads(json.dumps(RECORDED_PODS))


def test_resource_cpu_utilization_from_recorded_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    api = FakeTransport()
    monkeypatch.setattr(resource.SCALER, "transport", api)
    spec = {"name": "cpu", "type": "resource", "resource": {"name": "cpu"}, "target": {"type": "Utilization"}}
    reading = read(spec)
    assert reading.error is None
    # Usage in milli-cores rounded up (183m + 98m) of 400m requested: 70 %, whole percent as the HPA.
    assert reading.value == 70.0
    assert reading.pods is not None and (reading.pods.ready.count, reading.pods.missing.count) == (2, 0)
    assert sorted(api.calls) == [
        ("GET", "/api/v1/namespaces/default/pods", [("labelSelector", "app=web")], 3.0),
        ("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", [("labelSelector", "app=web")], 3.0),
    ]


def test_resource_memory_average_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource.SCALER, "transport", FakeTransport())
    spec = {
        "name": "mem",
        "type": "resource",
        "resource": {"name": "memory"},
        "target": {"type": "AverageValue"},
    }
    assert read(spec) == MetricReading(name="mem", value=(41232 + 38912) * 1024 / 2)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (
            ApiError(404, "Not Found", "the server could not find the requested resource"),
            "is not served (HTTP 404)",
        ),
        (ApiError(503, "Service Unavailable", "metrics-server is down"), "HTTP 503 Service Unavailable"),
        (
            ApiError(None, "ReadTimeoutError", "read timed out"),
            "Kubernetes API request failed: read timed out",
        ),
    ],
)
def test_resource_api_errors(monkeypatch: pytest.MonkeyPatch, error: Exception, message: str) -> None:
    monkeypatch.setattr(resource.SCALER, "transport", FakeTransport(error=error))
    spec = {"name": "cpu", "type": "resource", "resource": {"name": "cpu"}, "target": {"type": "Utilization"}}
    reading = read(spec)
    assert (
        reading.error is not None and reading.error.startswith("resource cpu: ") and message in reading.error
    )
