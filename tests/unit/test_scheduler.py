"""The scheduler of Greeter passes and ScaledApp rounds: due order, wakes, removal, failures, the gate."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import REGISTRY

from kopfscale import peering
from kopfscale.scheduler import Scheduler

Clock = Callable[[], float]


class Job:
    """A round that records when it ran; ``hold`` keeps it running until released."""

    def __init__(self, name: str, log: list[str], interval: float = 30.0) -> None:
        self.name, self.log, self.interval = name, log, interval
        self.hold: asyncio.Event | None = None
        self.fail = False
        self.cancelled = False

    async def tick(self) -> float:
        self.log.append(self.name)
        if self.hold is not None:
            try:
                await self.hold.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        if self.fail:
            raise RuntimeError("boom")
        return self.interval

    def backoff(self) -> float:
        return 0.05


async def running(scheduler: Scheduler, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(scheduler.run())
    try:
        await body()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_new_entry_runs_at_once_then_every_interval_and_a_wake_runs_it_now() -> None:
    log: list[str] = []

    async def scenario() -> None:
        scheduler = Scheduler()
        scheduler.add("a", Job("a", log, interval=0.3))

        async def body() -> None:
            await asyncio.sleep(0.1)
            assert log == ["a"]  # first round at once; the next is 0.3 s after it started
            await asyncio.sleep(0.3)
            assert log == ["a", "a"]
            scheduler.wake("a")  # a spec change: now, not at the next interval
            await asyncio.sleep(0.05)
            assert log == ["a", "a", "a"]

        await running(scheduler, body)

    asyncio.run(scenario())


def test_woken_entries_go_ahead_of_a_backlog_of_due_ones() -> None:
    log: list[str] = []

    async def scenario() -> None:
        scheduler = Scheduler(workers=1)
        slow = [Job(f"due{i}", log, interval=0.0) for i in range(5)]
        for job in slow:
            scheduler.add(job.name, job)
        woken = Job("woken", log, interval=60.0)
        scheduler.add("woken", woken)

        async def body() -> None:
            await asyncio.sleep(0.05)
            log.clear()
            scheduler.wake("woken")  # while five rounds are due again all the time
            await asyncio.sleep(0.05)
            assert "woken" in log[:2], log  # the next free worker takes it, not the backlog

        await running(scheduler, body)

    asyncio.run(scenario())


def test_new_entries_and_spec_changes_go_ahead_of_other_wakes() -> None:
    """Under a burst, the work that changes the cluster (children to create) comes before status
    refreshes: a new entry and a ``first`` wake overtake plain wakes queued before them."""
    log: list[str] = []

    async def scenario() -> None:
        scheduler = Scheduler(workers=1)
        for name in ("refresh", "edited"):
            scheduler.add(name, Job(name, log, interval=60.0))
        busy = Job("busy", log, interval=60.0)
        gate = asyncio.Event()
        scheduler.add("busy", busy)

        async def body() -> None:
            await asyncio.sleep(0.1)
            assert sorted(log) == ["busy", "edited", "refresh"]  # all three ran once
            log.clear()
            busy.hold = gate
            scheduler.wake("busy")
            await asyncio.sleep(0.05)
            assert log == ["busy"]  # it holds the only worker now
            scheduler.wake("refresh")  # e.g. a child's status moved
            scheduler.wake("edited", first=True)  # e.g. its spec changed, woken later
            scheduler.add("new", Job("new", log, interval=60.0))
            scheduler.wake("new")  # its children's events: they never demote its first pass
            busy.hold = None
            gate.set()
            await asyncio.sleep(0.1)
            assert log == ["busy", "edited", "new", "refresh"]

        await running(scheduler, body)

    asyncio.run(scenario())


def test_a_wake_during_a_round_runs_it_again_right_after() -> None:
    log: list[str] = []

    async def scenario() -> None:
        scheduler = Scheduler()
        job = Job("a", log, interval=60.0)
        release = job.hold = asyncio.Event()
        scheduler.add("a", job)

        async def body() -> None:
            await asyncio.sleep(0.05)
            scheduler.wake("a")  # the spec changed while the round was reading the old one
            await asyncio.sleep(0.05)
            assert log == ["a"]  # still in its first round: a round never runs twice at once
            job.hold = None
            release.set()
            await asyncio.sleep(0.05)
            assert log == ["a", "a"]  # the second came right after the first, not 60 s later

        await running(scheduler, body)

    asyncio.run(scenario())


def test_removing_an_entry_cancels_its_round_and_it_never_runs_again() -> None:
    log: list[str] = []

    async def scenario() -> None:
        scheduler = Scheduler()
        job = Job("a", log, interval=0.05)
        job.hold = asyncio.Event()
        scheduler.add("a", job)

        async def body() -> None:
            await asyncio.sleep(0.05)
            scheduler.remove("a")  # deleted while its round waits on the API server
            await asyncio.sleep(0.01)
            assert job.cancelled
            job.hold = None
            await asyncio.sleep(0.2)
            assert log == ["a"] and "a" not in scheduler

        await running(scheduler, body)

    asyncio.run(scenario())


def test_a_failing_round_is_retried_after_its_backoff_and_the_others_go_on() -> None:
    log: list[str] = []

    async def scenario() -> None:
        scheduler = Scheduler()
        bad, good = Job("bad", log, interval=60), Job("good", log, interval=60)
        bad.fail = True
        scheduler.add("bad", bad)
        scheduler.add("good", good)

        async def body() -> None:
            await asyncio.sleep(0.2)
            assert log.count("good") == 1
            assert log.count("bad") >= 3  # every 0.05 s (its backoff), not every 60 s

        await running(scheduler, body)

    asyncio.run(scenario())


def test_nothing_runs_while_the_gate_is_closed_and_reopening_resyncs_first() -> None:
    log: list[str] = []

    async def scenario() -> None:
        gate = peering.Gate()
        resyncs: list[int] = []

        async def on_open() -> None:
            resyncs.append(len(log))

        scheduler = Scheduler(gate=gate, on_open=on_open)
        scheduler.add("a", Job("a", log, interval=0.05))

        async def body() -> None:
            await asyncio.sleep(0.15)
            assert log == [] and resyncs == []  # a standby runs no round
            gate.set(peering.Verdict(True, "test"))
            await asyncio.sleep(0.12)
            assert resyncs == [0] and len(log) >= 2
            gate.set(peering.Verdict(False, "test"))
            await asyncio.sleep(0.02)
            stopped_at = len(log)
            await asyncio.sleep(0.15)
            assert len(log) == stopped_at  # closed: no new rounds
            gate.set(peering.Verdict(True, "test"))
            await asyncio.sleep(0.02)
            assert resyncs == [0, stopped_at]

        await running(scheduler, body)

    asyncio.run(scenario())


def lateness_count() -> float:
    value = REGISTRY.get_sample_value("kopfscale_autoscaler_loop_lateness_seconds_count")
    return value or 0.0


def test_lateness_is_recorded_for_due_rounds_not_for_woken_ones() -> None:
    log: list[str] = []

    async def scenario() -> None:
        scheduler = Scheduler()
        scheduler.add("a", Job("a", log, interval=0.05))
        before = lateness_count()

        async def body() -> None:
            await asyncio.sleep(0.02)
            assert lateness_count() == before  # the first round was asked for, not due
            await asyncio.sleep(0.12)
            assert lateness_count() >= before + 2

        await running(scheduler, body)

    asyncio.run(scenario())


# --- the gate's rule: kopf's, from the same peering records -------------------------------------------
NOW = datetime.datetime(2026, 12, 6, 12, 0, 0, tzinfo=datetime.UTC)


def record(priority: int, seconds_ago: float, lifetime: int = 10) -> dict[str, object]:
    seen = NOW - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lastseen": seen.isoformat(), "lifetime": lifetime}


@pytest.mark.parametrize(
    ("others", "active"),
    [
        ({}, True),
        ({"b": record(5, 1)}, True),  # a lower priority stands by
        ({"b": record(20, 1)}, False),  # a higher one acts
        ({"b": record(10, 1)}, False),  # the same: kopf pauses both
        ({"b": record(20, 11)}, True),  # a dead one (lastseen + lifetime passed) is ignored
        ({"b": record(20, 10)}, True),  # exactly at its deadline: dead, as kopf says
        ({"b": {"priority": 20}}, True),  # no lastseen: unreadable, ignored
    ],
)
def test_the_gate_follows_kopfs_peering_rule(others: dict[str, object], active: bool) -> None:
    status = {"me": record(10, 0), **others}
    verdict = peering.decide({"p": {"status": status}}, identity="me", priority=10, mandatory=True, now=NOW)
    assert verdict.active is active, verdict.why


def test_a_missing_peering_object_pauses_only_when_peering_is_mandatory() -> None:
    kwargs = {"identity": "me", "priority": 1, "now": NOW}
    assert not peering.decide({"p": None}, mandatory=True, **kwargs).active  # type: ignore[arg-type]
    assert peering.decide({"p": None}, mandatory=False, **kwargs).active  # type: ignore[arg-type]


def test_own_identity_is_pod_id_or_one_made_up_and_exported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_ID", "kopfscale-abc")
    assert peering.own_identity() == "kopfscale-abc"
    monkeypatch.delenv("POD_ID")
    made = peering.own_identity()
    assert made and peering.own_identity() == made  # kopf reads the same $POD_ID
