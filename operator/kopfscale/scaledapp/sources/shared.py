"""Identical reads once: ScaledApps asking a source the same question share one read.

A fleet often asks one thing many times: one Prometheus query behind every ScaledApp of a
service, one queue endpoint read by each of its consumers. ``sources.read`` sends every read of a
source that opts in (``Scaler.resolve``: ``http`` and ``prometheus``) through :data:`FLIGHTS`:

- **The key** is an HMAC-SHA256, under a random key of the process, of the source type, the
  timeout and the read *as this ScaledApp resolved it*: URL and query, every header with the
  values read from its own Secrets (``headersFrom``, ``basicAuth``, ``bearerToken``), the CA
  bundle, and how the answer is read (``valueLocation``, ``ignoreNullValues``). Two ScaledApps
  share a result only when each would have sent the same request with the same credentials, so
  neither gets a number it could not have fetched itself. The egress policy is one per process
  (and flights are dropped when the sources close), so the same URL gets the same decision. The
  key is a digest kept in memory only: never logged, never a label.
- **In flight** (single-flight): a read whose request is under way is joined by every identical read.
- **Fresh**: a finished read, value or error, is also given to an identical read that starts
  within :func:`max_age` of it — min(0.5 s, pollingInterval / 2) of the asking ScaledApp. However
  many ScaledApps ask, an endpoint sees one identical request at a time and, while they poll every
  second or more, about two a second; a ScaledApp reacts at most that much later than alone
  (docs/metric-sources.md).
- **Budgets**: the ScaledApp that starts a read first takes a slot of its own in-flight budget
  (``Scaler.admit``), and only then is the read visible to others: a read queued behind one
  tenant's full budget is never joined by another. It holds that one slot until it ends (at
  most its timeout after it started); those who join take none. Its evaluation is charged to
  one of its askers (``evaluation``).
- **Cancellation**: the read runs in a task of its own, within its own timeout; an asker that is
  cancelled or times out only stops waiting, the read goes on for the others.
- **Errors** are shared like values: each ScaledApp gets the error with its own metric's label,
  and reports it itself (status, ``MetricFailed``).

``kopfscale_metric_queries_total`` and ``kopfscale_metric_queries_saved_total`` (``{type}``)
count the reads that made a request and those answered without one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

from kopfscale.scaledapp.sources.base import Askers, PodSample, Scaler, SourceContext, SourceError, Tenant

#: The longest a finished read is given to others (seconds from its start).
MAX_AGE = 0.5
#: For a reader that does not say its pollingInterval (tools, tests): half the shortest allowed.
DEFAULT_AGE = 0.5


def max_age(polling_interval: float | None) -> float:
    """How old a finished read (from its start) a ScaledApp polling every ``polling_interval`` s takes."""
    if polling_interval is None or polling_interval <= 0:
        return DEFAULT_AGE
    return min(MAX_AGE, polling_interval / 2)


@dataclasses.dataclass(eq=False)
class Flight:
    """One read under way or recently done, for everyone whose read resolved the same."""

    started: float
    task: asyncio.Task[float]
    askers: Askers
    release: Callable[[], None]  # gives back the budget slot of the ScaledApp that started it

    def usable(self, now: float, age: float) -> bool:
        if self.task.get_loop() is not asyncio.get_running_loop():
            return False  # a flight of an event loop gone (tests, tools)
        if not self.task.done():
            return True
        return not self.task.cancelled() and now - self.started <= age


class Flights:
    """The reads in flight and recently done, by key."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._flights: dict[bytes, Flight] = {}

    def key(self, source_type: str, time_limit: float, resolved: Any) -> bytes:
        """The keyed digest of everything the result depends on (every field: credentials too)."""
        material = json.dumps(
            [source_type, time_limit, dataclasses.asdict(resolved)], sort_keys=True, separators=(",", ":")
        )
        return hmac.digest(self._secret, material.encode(), "sha256")

    async def read(
        self, scaler: Scaler[Any], config: Any, time_limit: float, ctx: SourceContext
    ) -> float | PodSample:
        """The scaler's number for this ScaledApp (a read lasts at most ``time_limit`` s, the
        metric's timeout): shared when the scaler resolves its reads (a ``resource`` reading, with
        its Pods, is this ScaledApp's own and never shared)."""
        resolved = await scaler.resolve(config, ctx)
        if resolved is None:
            return await scaler.read(config, ctx)
        key = self.key(scaler.type, time_limit, resolved)
        tenant = Tenant(ctx.namespace, ctx.scaledapp)
        age = max_age(ctx.polling_interval)
        flight = self._find(key, age)
        if flight is None:
            release = await scaler.admit(tenant)
            flight = self._find(key, age)  # another ScaledApp may have started it meanwhile
            if flight is None:
                flight = self._start(key, scaler, resolved, time_limit, tenant, release)
                _count(scaler.type, saved=False)
                return await self._wait(flight)
            release()
        flight.askers.join(tenant)
        _count(scaler.type, saved=True)
        return await self._wait(flight)

    def _find(self, key: bytes, age: float) -> Flight | None:
        flight = self._flights.get(key)
        if flight is None or not flight.usable(self._clock(), age):
            return None
        return flight

    def _start(
        self,
        key: bytes,
        scaler: Scaler[Any],
        resolved: Any,
        time_limit: float,
        tenant: Tenant,
        release: Callable[[], None],
    ) -> Flight:
        askers = Askers(tenant)
        task = asyncio.create_task(_perform(scaler, resolved, time_limit, askers), name="shared read")
        flight = Flight(self._clock(), task, askers, release)
        self._flights[key] = flight
        task.add_done_callback(functools.partial(self._landed, key, flight))
        return flight

    def _landed(self, key: bytes, flight: Flight, task: asyncio.Task[float]) -> None:
        flight.release()  # also when cancelled before it ran
        if task.cancelled():
            self._forget(key, flight)
            return
        task.exception()  # retrieved: every asker may have stopped waiting
        task.get_loop().call_later(MAX_AGE, self._forget, key, flight)

    def _forget(self, key: bytes, flight: Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    async def _wait(self, flight: Flight) -> float:
        if flight.task.done():
            return flight.task.result()
        try:
            return await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if flight.task.cancelled() and (current is None or not current.cancelling()):
                raise SourceError("the read was cancelled: the metric sources are stopping") from None
            raise

    def close(self) -> None:
        """Cancel the reads in flight and forget them all (the sources are closing; in the loop)."""
        flights, self._flights = self._flights, {}
        loop = asyncio.get_running_loop()
        for flight in flights.values():
            if flight.task.get_loop() is loop:  # another loop's (an operator gone): it ends on its own
                flight.task.cancel()


def _count(source_type: str, *, saved: bool) -> None:
    # Imported here, not above: kopfscale.metrics registers kopf handlers, which the tools that
    # import the sources (the simulator) must not get; by the first read the operator has it.
    from kopfscale import metrics

    metrics.record_metric_query(source_type, saved=saved)


async def _perform(scaler: Scaler[Any], resolved: Any, time_limit: float, askers: Askers) -> float:
    async with asyncio.timeout(time_limit):
        return float(await scaler.perform(resolved, askers))


#: The operator's one registry of shared reads.
FLIGHTS = Flights()
