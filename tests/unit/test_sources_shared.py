"""Identical reads once (sources/shared.py), against real loopback HTTP servers.

ScaledApps asking a source the same question with the same credentials share one request; any
difference in the request (headers, Secret values, CA, valueLocation, timeout) keeps them apart;
errors are shared as errors; a cancelled asker cancels nothing for the others; the tenants'
in-flight budgets count a shared read once and cannot be used to hold up another tenant.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest

from kopfscale.scaledapp import sources
from kopfscale.scaledapp.sources import credentials, evaluation, shared
from kopfscale.scaledapp.sources.base import Askers, MetricReading, SourceContext, Tenant
from tests.helpers import JsonServer


class Endpoint:
    """A loopback JSON endpoint that counts its requests, answers by the credential it is sent
    (``answers``: header value -> load, else ``default``) and holds answers while ``gate`` is shut."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Event()
        self.status = 200
        self.default = 7.0
        self.answers: dict[str, float] = {}
        self.server = JsonServer(self.respond)
        self.server.httpd.handle_error = lambda *_: None  # type: ignore[method-assign]  # askers that timed out hang up
        self.url = self.server.url

    def respond(self, headers: dict[str, str]) -> tuple[int, bytes]:
        self.seen.append(headers)
        self.arrived.set()
        self.gate.wait(20)
        if self.status != 200:
            return self.status, b'{"error": "down"}'
        credential = headers.get("Authorization") or headers.get("X-Api-Key") or ""
        return 200, json.dumps({"load": self.answers.get(credential, self.default)}).encode()

    async def wait_arrived(self) -> None:
        assert await asyncio.to_thread(self.arrived.wait, 10), "the endpoint saw no request"

    def close(self) -> None:
        self.gate.set()
        self.server.close()


@pytest.fixture()
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


@pytest.fixture()
def other_endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def flights(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """A registry of shared reads of this test's own, on a clock the test moves."""
    clock = Clock()
    monkeypatch.setattr(shared, "FLIGHTS", shared.Flights(clock))
    credentials.SECRETS.clear()
    yield clock
    credentials.SECRETS.clear()


def metric(url: str, name: str = "load", **http: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "http",
        "http": {"url": url, "valueLocation": "$.load", **http},
        "target": {"type": "AverageValue", "value": 10},
    }


def ctx(namespace: str = "team", name: str = "app", polling_interval: float | None = 30) -> SourceContext:
    return SourceContext(
        namespace=namespace,
        pod_selector=None,
        now=lambda: datetime.datetime.now(datetime.UTC),
        scaledapp=name,
        polling_interval=polling_interval,
    )


async def read(spec: dict[str, Any], context: SourceContext) -> MetricReading:
    return await sources.read(spec["name"], sources.parse_source(spec), context)


def run(main: Callable[[], Any]) -> Any:
    async def opened() -> Any:
        async with sources.opened():
            return await main()

    return asyncio.run(opened())


def counted(name: str, source_type: str = "http") -> float:
    return REGISTRY.get_sample_value(name, {"type": source_type}) or 0.0


def test_max_age_is_half_the_polling_interval_and_at_most_half_a_second() -> None:
    assert shared.max_age(30) == 0.5
    assert shared.max_age(2) == 0.5
    assert shared.max_age(1) == 0.5
    assert shared.max_age(None) == 0.5  # a tool that does not say: half the shortest allowed


def test_a_hundred_scaledapps_asking_the_same_make_one_request(endpoint: Endpoint) -> None:
    made, saved = counted("kopfscale_metric_queries_total"), counted("kopfscale_metric_queries_saved_total")
    endpoint.gate.clear()

    async def main() -> list[MetricReading]:
        asks = [
            asyncio.create_task(read(metric(endpoint.url), ctx(f"team-{i % 10}", f"app-{i}")))
            for i in range(100)
        ]
        await endpoint.wait_arrived()
        await asyncio.sleep(0.1)  # every ask has started
        endpoint.gate.set()
        return list(await asyncio.gather(*asks))

    readings = run(main)
    assert readings == [MetricReading("load", value=7.0)] * 100
    assert len(endpoint.seen) == 1
    assert counted("kopfscale_metric_queries_total") - made == 1
    assert counted("kopfscale_metric_queries_saved_total") - saved == 99


def test_two_metrics_of_one_scaledapp_asking_the_same_make_one_request(endpoint: Endpoint) -> None:
    async def main() -> list[MetricReading]:
        return list(
            await asyncio.gather(
                read(metric(endpoint.url, "a"), ctx()), read(metric(endpoint.url, "b"), ctx())
            )
        )

    assert run(main) == [MetricReading("a", value=7.0), MetricReading("b", value=7.0)]
    assert len(endpoint.seen) == 1


def test_a_finished_read_is_shared_only_while_young_enough_for_the_asker(
    endpoint: Endpoint, flights: Clock
) -> None:
    async def main() -> None:
        assert (await read(metric(endpoint.url), ctx(name="a"))).value == 7.0
        assert len(endpoint.seen) == 1
        flights.now += 0.4
        endpoint.default = 8.0
        # pollingInterval 30 s: a result up to 0.5 s old is taken.
        assert (await read(metric(endpoint.url), ctx(name="b", polling_interval=30))).value == 7.0
        assert len(endpoint.seen) == 1
        # pollingInterval 0.6 s (a tool's): at most 0.3 s old; this one asks again.
        assert (await read(metric(endpoint.url), ctx(name="c", polling_interval=0.6))).value == 8.0
        assert len(endpoint.seen) == 2
        flights.now += 0.51
        assert (await read(metric(endpoint.url), ctx(name="b", polling_interval=30))).value == 8.0
        assert len(endpoint.seen) == 3

    run(main)


@pytest.mark.parametrize(
    "variant",
    [
        {"headers": {"X-Team": "payments"}},
        {"valueLocation": "$['load']"},
        {"timeout": 2},
        {"url_suffix": "?page=2"},
    ],
    ids=["headers", "valueLocation", "timeout", "query"],
)
def test_reads_that_differ_in_anything_are_separate_requests(
    endpoint: Endpoint, variant: dict[str, Any]
) -> None:
    suffix = variant.pop("url_suffix", "")
    endpoint.gate.clear()

    async def main() -> list[MetricReading]:
        asks = [
            asyncio.create_task(read(metric(endpoint.url), ctx(name="a"))),
            asyncio.create_task(read(metric(endpoint.url + suffix, **variant), ctx(name="b"))),
        ]
        await endpoint.wait_arrived()
        await asyncio.sleep(0.1)
        endpoint.gate.set()
        return list(await asyncio.gather(*asks))

    assert [r.value for r in run(main)] == [7.0, 7.0]
    assert len(endpoint.seen) == 2


SECRET_REF = {"secretKeyRef": {"name": "metrics-creds", "key": "value"}}
CREDENTIALS = {
    "bearerToken": ({"bearerToken": {"valueFrom": SECRET_REF}}, lambda v: f"Bearer {v}"),
    "basicAuth": (
        {"basicAuth": {"username": {"value": "scaler"}, "password": {"valueFrom": SECRET_REF}}},
        lambda v: "Basic " + base64.b64encode(f"scaler:{v}".encode()).decode(),
    ),
    "headersFrom": ({"headersFrom": [{"name": "X-Api-Key", "valueFrom": SECRET_REF}]}, lambda v: v),
}


def secrets_by_namespace(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    """Secret metrics-creds in each namespace, with ``value`` = ``values[namespace]``."""

    def read_secret(namespace: str, name: str) -> dict[str, str]:
        assert name == "metrics-creds"
        return {"value": base64.b64encode(values[namespace].encode()).decode()}

    monkeypatch.setattr(credentials, "read_secret", read_secret)


@pytest.mark.parametrize("kind", list(CREDENTIALS))
def test_scaledapps_whose_secrets_differ_never_share(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    block, sent = CREDENTIALS[kind]
    secrets_by_namespace(monkeypatch, {"team-a": "secret-of-a", "team-b": "secret-of-b"})
    endpoint.answers = {sent("secret-of-a"): 1.0, sent("secret-of-b"): 2.0}
    endpoint.default = -1.0  # what a request without a valid credential would read
    endpoint.gate.clear()

    async def main() -> list[MetricReading]:
        asks = [
            asyncio.create_task(read(metric(endpoint.url, **block), ctx("team-a", "same-name"))),
            asyncio.create_task(read(metric(endpoint.url, **block), ctx("team-b", "same-name"))),
        ]
        await endpoint.wait_arrived()
        await asyncio.sleep(0.1)  # b asks while a's request is in flight
        endpoint.gate.set()
        return list(await asyncio.gather(*asks))

    a, b = run(main)
    assert (a.value, b.value) == (1.0, 2.0), (a, b)
    assert len(endpoint.seen) == 2
    assert sorted(h.get("Authorization") or h.get("X-Api-Key") or "" for h in endpoint.seen) == sorted(
        [sent("secret-of-a"), sent("secret-of-b")]
    )


def test_scaledapps_holding_the_same_secret_value_share(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    block, sent = CREDENTIALS["bearerToken"]
    secrets_by_namespace(monkeypatch, {"team-a": "shared-token", "team-b": "shared-token"})
    endpoint.answers = {sent("shared-token"): 3.0}

    async def main() -> list[MetricReading]:
        return list(
            await asyncio.gather(
                read(metric(endpoint.url, **block), ctx("team-a")),
                read(metric(endpoint.url, **block), ctx("team-b")),
            )
        )

    assert [r.value for r in run(main)] == [3.0, 3.0]
    assert len(endpoint.seen) == 1  # each could have fetched it with its own Secret


OPENSSL_CA = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
OPENSSL_CA += ["-nodes", "-days", "1"]


@pytest.fixture(scope="module")
def two_cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Two self-signed CA certificates (PEM), made with openssl."""
    pems = []
    for name in ("ca-one", "ca-two"):
        key = tmp_path_factory.mktemp(name) / "key.pem"
        out = subprocess.run(
            [*OPENSSL_CA, "-subj", f"/CN={name}", "-keyout", str(key)],
            capture_output=True,
            text=True,
            check=True,
        )
        pems.append(out.stdout)
    return pems[0], pems[1]


def test_a_different_tls_ca_is_a_different_question(endpoint: Endpoint, two_cas: tuple[str, str]) -> None:
    one, two = two_cas

    async def main() -> list[MetricReading]:
        return list(
            await asyncio.gather(
                read(metric(endpoint.url, tls={"ca": {"value": one}}), ctx(name="a")),
                read(metric(endpoint.url, tls={"ca": {"value": two}}), ctx(name="b")),
                read(metric(endpoint.url, tls={"ca": {"value": one}}), ctx(name="c")),
            )
        )

    assert [r.value for r in run(main)] == [7.0, 7.0, 7.0]
    assert len(endpoint.seen) == 2  # a and c trust the same CA; b another


def test_errors_are_shared_as_errors_each_with_its_own_metric(endpoint: Endpoint) -> None:
    endpoint.status = 500

    async def main() -> list[MetricReading]:
        return list(
            await asyncio.gather(
                *(read(metric(endpoint.url, f"m{i}"), ctx(name=f"app-{i}")) for i in range(10))
            )
        )

    readings = run(main)
    error = f"http {endpoint.url}: HTTP 500 Internal Server Error (application/json, 17 bytes)"
    assert readings == [MetricReading(f"m{i}", error=error) for i in range(10)]
    assert len(endpoint.seen) == 1


def test_a_timeout_is_shared_and_the_read_is_not_repeated(endpoint: Endpoint) -> None:
    endpoint.gate.clear()

    async def main() -> list[MetricReading]:
        readings = await asyncio.gather(
            *(read(metric(endpoint.url, timeout=0.3), ctx(name=f"app-{i}")) for i in range(5))
        )
        endpoint.gate.set()
        return list(readings)

    readings = run(main)
    assert {r.error for r in readings} == {f"http {endpoint.url}: timed out after 0.3s"}
    assert len(endpoint.seen) == 1


def test_a_cancelled_asker_does_not_cancel_the_read_of_the_others(endpoint: Endpoint) -> None:
    endpoint.gate.clear()

    async def main() -> tuple[list[MetricReading], MetricReading]:
        first = asyncio.create_task(read(metric(endpoint.url), ctx(name="first")))
        await endpoint.wait_arrived()
        others = [asyncio.create_task(read(metric(endpoint.url), ctx(name=f"other-{i}"))) for i in range(3)]
        await asyncio.sleep(0.05)
        first.cancel()  # e.g. its ScaledApp was deleted mid-round
        await asyncio.sleep(0.05)
        endpoint.gate.set()
        results = list(await asyncio.gather(*others))
        assert first.cancelled()
        # Everyone gone: the read still lands, and is given to the next asker within the window.
        endpoint.gate.clear()
        endpoint.arrived.clear()
        endpoint.default = 9.0
        alone = asyncio.create_task(read(metric(endpoint.url, timeout=2), ctx(name="alone")))
        await endpoint.wait_arrived()
        alone.cancel()
        endpoint.gate.set()
        await asyncio.sleep(0.3)
        return results, await read(metric(endpoint.url, timeout=2), ctx(name="later"))

    results, later = run(main)
    assert results == [MetricReading("load", value=7.0)] * 3
    assert later == MetricReading("load", value=9.0)
    assert len(endpoint.seen) == 2


def test_a_tenant_with_a_full_budget_cannot_hold_up_an_identical_read_of_another(
    endpoint: Endpoint, other_endpoint: Endpoint
) -> None:
    slow = other_endpoint
    slow.gate.clear()

    async def main() -> tuple[float, MetricReading, MetricReading]:
        hog = ctx("hostile", "hog")
        # Four slow reads fill the hog's budget (fetch.PER_SCALEDAPP), then it asks what the victim asks.
        stuck = [asyncio.create_task(read(metric(f"{slow.url}?i={i}", timeout=10), hog)) for i in range(4)]
        await slow.wait_arrived()
        queued = asyncio.create_task(read(metric(endpoint.url, timeout=10), hog))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        victim = await read(metric(endpoint.url, timeout=10), ctx("victim", "app"))
        took = time.monotonic() - started
        slow.gate.set()
        await asyncio.gather(*stuck)
        return took, victim, await queued

    took, victim, hog_reading = run(main)
    assert victim == MetricReading("load", value=7.0)
    assert took < 2.0, f"the victim waited {took:.1f}s behind the hog's budget"
    assert hog_reading == MetricReading("load", value=7.0)


def test_a_shared_read_counts_once_against_the_namespace(
    endpoint: Endpoint, other_endpoint: Endpoint
) -> None:
    endpoint.gate.clear()

    async def main() -> tuple[float, MetricReading]:
        # 40 ScaledApps of one namespace share one slow read: more than its 32 slots if each held one.
        fleet = [
            asyncio.create_task(read(metric(endpoint.url, timeout=10), ctx("big", f"app-{i}")))
            for i in range(40)
        ]
        await endpoint.wait_arrived()
        await asyncio.sleep(0.1)
        started = time.monotonic()
        neighbour = await read(metric(other_endpoint.url, timeout=10), ctx("big", "neighbour"))
        took = time.monotonic() - started
        endpoint.gate.set()
        await asyncio.gather(*fleet)
        return took, neighbour

    took, neighbour = run(main)
    assert neighbour == MetricReading("load", value=7.0)
    assert took < 2.0, f"the neighbour waited {took:.1f}s for a slot of its namespace"
    assert len(endpoint.seen) == 1


def test_a_shared_evaluation_runs_on_a_free_askers_slot_not_behind_a_busy_one() -> None:
    hog, victim = Tenant("hostile", "hog"), Tenant("victim", "app")
    big = evaluation.INLINE_BYTES + 1
    hold = threading.Event()

    async def main() -> tuple[str, float]:
        evaluator = evaluation.Evaluator()
        try:
            busy = asyncio.create_task(evaluator(big, Askers(hog), hold.wait, 10))  # the hog's own slot taken
            await asyncio.sleep(0.05)
            askers = Askers(hog)  # a read the hog started...
            shared_read = asyncio.create_task(evaluator(big, askers, lambda: "value"))
            await asyncio.sleep(0.05)
            assert not shared_read.done()  # ...waits while its only asker is busy
            started = time.monotonic()
            askers.join(victim)  # the victim joins it: charged to the victim's free slot
            result = await asyncio.wait_for(shared_read, 5)
            took = time.monotonic() - started
            assert not busy.done()
            hold.set()
            await busy
            return result, took
        finally:
            hold.set()
            evaluator.close()

    result, took = asyncio.run(main())
    assert result == "value" and took < 1.0


def test_one_scaledapp_still_evaluates_one_large_document_at_a_time() -> None:
    app = Tenant("team", "app")
    big = evaluation.INLINE_BYTES + 1
    running = 0
    most = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    async def main() -> None:
        evaluator = evaluation.Evaluator()
        try:
            await asyncio.gather(*(evaluator(big, Askers(app), work) for _ in range(4)))
        finally:
            evaluator.close()

    asyncio.run(main())
    assert most == 1


def test_no_secret_reaches_the_logs_or_the_metrics(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    block, _ = CREDENTIALS["bearerToken"]
    secrets_by_namespace(monkeypatch, {"team-a": "tok-5ecret-a", "team-b": "tok-5ecret-b"})
    caplog.set_level(logging.DEBUG)

    async def main() -> None:
        await asyncio.gather(
            read(metric(endpoint.url, **block), ctx("team-a")),
            read(metric(endpoint.url, **block), ctx("team-b")),
        )
        assert "5ecret" not in repr(list(shared.FLIGHTS._flights.values()))

    run(main)
    exposed = generate_latest(REGISTRY).decode()
    assert "5ecret" not in caplog.text and "5ecret" not in exposed
    lines = [line for line in exposed.splitlines() if line.startswith("kopfscale_metric_queries")]
    assert lines and all('{type="' in line and "namespace" not in line for line in lines), lines


def test_sources_that_are_not_requests_are_not_shared() -> None:
    cron = {
        "name": "hours",
        "type": "cron",
        "cron": {"timezone": "UTC", "start": "0 0 * * *", "end": "59 23 * * *", "desiredReplicas": 2},
    }
    made = counted("kopfscale_metric_queries_total", "cron")

    noon = datetime.datetime(2024, 3, 4, 12, 0, tzinfo=datetime.UTC)

    async def main() -> list[MetricReading]:
        contexts = [ctx(name=name) for name in ("a", "b")]
        for context in contexts:
            context.now = lambda: noon
        return list(await asyncio.gather(*(read(cron, context) for context in contexts)))

    assert [r.value for r in run(main)] == [2.0, 2.0]
    assert counted("kopfscale_metric_queries_total", "cron") == made == 0.0
