"""One scheduler for every round of both controllers: a due-time queue and a bounded pool of workers.

Each ScaledApp used to be a kopf daemon: a task of its own, sleeping between rounds. That cost
memory per object (a task, its stack, kopf's daemon records), made kopf put a finalizer on every
ScaledApp (so a ScaledApp deleted while the operator was down hung in ``Terminating``), and let a
thousand loops wake at once and queue their API calls behind each other with no order. Each Greeter
event used to run a whole kopf handler, a dozen per Greeter in a burst, each on a state already
outdated. Now both are *entries* here (a scheduler per controller, the same class):

- entries sit in one heap, ordered by when they are due; ``workers`` of them run at a time, and the
  earliest due starts first;
- a **woken** entry (a ScaledApp's spec changed, a rival appeared or went away, its Deployment changed
  hands; any event of a Greeter or its children) goes ahead of those merely due, so a pause, a new
  target or a conflict takes effect within a second however long the backlog is;
- an entry woken while it runs runs again right after, once, reading the newest state: events never
  pile up as work;
- removing an entry cancels its round in flight.

How late rounds start (actual start - due time) is recorded for ``/metrics``
(``kopfscale_autoscaler_loop_lateness_seconds``): a growing tail means the workers cannot keep up.

With kopf peering, only the replica that acts runs anything: the scheduler dispatches nothing while
its :class:`kopfscale.peering.Gate` is closed, and calls ``on_open`` each time it opens again (the
controller looks at its objects afresh then: another replica acted meanwhile).

Generic and kopf-free: what a round *is* (:class:`Round`) and what a key means is the caller's
business (:mod:`kopfscale.scaledapp.rounds`, :mod:`kopfscale.greeter.passes`).
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from kopfscale import metrics as operator_metrics
from kopfscale.peering import Gate

#: Rounds running at once. Each spends most of its time waiting on the API server or a metric
#: source (its blocking calls run in the I/O threads), so this bounds concurrency, not CPU.
WORKERS = 64


class Round(Protocol):
    """One ScaledApp's autoscaling: a round, and how long to wait after a round that raised."""

    async def tick(self) -> float: ...
    def backoff(self) -> float: ...


#: Heap ranks, first to last: an entry whose object is new or whose spec changed (work that changes
#: the cluster: children to create, a target to scale), then any other wake (a status to refresh, a
#: conflict to check), then rounds that are merely due. Under a burst of new objects, their
#: children are made first and the statuses follow — fewer, later status writes, not slower ones.
FIRST, URGENT, DUE = 0, 1, 2


@dataclass(eq=False)
class Entry:
    key: Hashable
    job: Round
    due: float  # the clock time the next round is due
    woken: bool = True  # the next round was asked for now (not late, whatever its due time)
    seq: int = 0  # the heap item that stands for this entry now; older ones are stale
    rank: int = DUE  # the rank that heap item has
    running: asyncio.Task[None] | None = None
    rerun: int | None = None  # woken while running: run again right after, at this rank
    removed: bool = False


@dataclass
class Scheduler:
    """The due-time queue of every round; :meth:`run` dispatches them until cancelled."""

    workers: int = WORKERS
    gate: Gate | None = None
    on_open: Callable[[], Awaitable[None]] | None = None
    #: The context rounds run in (see :meth:`adopt_context`); None: the dispatcher's own.
    context: contextvars.Context | None = None
    logger: logging.Logger | logging.LoggerAdapter[Any] = field(
        default_factory=lambda: logging.getLogger(__name__)
    )
    _entries: dict[Hashable, Entry] = field(default_factory=dict)
    _heap: list[tuple[int, float, int, Hashable]] = field(default_factory=list)
    _seq: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _slots: asyncio.Semaphore | None = None

    # --- what the controller tells it ------------------------------------------------------------
    def add(self, key: Hashable, job: Round) -> None:
        """A new entry, its first round due now (an existing key is only woken)."""
        if key in self._entries:
            self.wake(key)
            return
        self._entries[key] = entry = Entry(key, job, due=self._now())
        self._push(entry, FIRST)

    def adopt_context(self) -> None:
        """Run every round in the caller's context from now on (once; later calls do nothing).

        kopf posts events (``kopf.info``/``kopf.warn``) through context variables it sets only in
        its handlers' contexts, and a round is not a kopf handler; the controllers' watch handlers
        hand their context over, so rounds post their events the way handlers do.
        """
        if self.context is None:
            self.context = contextvars.copy_context()

    def get(self, key: Hashable) -> Round | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.job

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._entries))

    def wake(self, key: Hashable, *, first: bool = False) -> None:
        """Run this entry's round now, ahead of the merely due (again, if one is running);
        ``first``: its object's spec changed, ahead of the other wakes too."""
        entry = self._entries.get(key)
        if entry is None:
            return
        rank = FIRST if first else URGENT
        if entry.running is not None:
            entry.rerun = rank if entry.rerun is None else min(entry.rerun, rank)
            return
        if entry.rank <= rank:
            return  # queued already, as early or earlier (a wake never demotes a new object's pass)
        entry.woken = True
        self._push(entry, rank)

    def remove(self, key: Hashable) -> None:
        """Forget the entry; a round of it in flight is cancelled."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        entry.removed = True
        if entry.running is not None:
            entry.running.cancel()

    # --- the dispatcher ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Start due rounds, ``workers`` at a time, while the gate is open; until cancelled."""
        self._slots = asyncio.Semaphore(self.workers)
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                if self.gate is not None and not self.gate.is_open():
                    await self.gate.wait_open()
                    if self.on_open is not None:
                        await self.on_open()
                await self._slots.acquire()
                entry = await self._next_due()
                if entry is None:  # the gate closed while waiting
                    self._slots.release()
                    continue
                task = asyncio.create_task(
                    self._round(entry), name=f"round of {entry.key}", context=self.context
                )
                entry.running = task
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in list(running):
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    async def _next_due(self) -> Entry | None:
        """The next entry to run, once it is due; None if the gate closed meanwhile."""
        while True:
            if self.gate is not None and not self.gate.is_open():
                return None
            while self._heap and self._stale(self._heap[0]):
                heapq.heappop(self._heap)
            wait: float | None = None
            if self._heap:
                rank, due, _, key = self._heap[0]
                wait = 0.0 if rank != DUE else due - self._now()
                if wait <= 0:
                    heapq.heappop(self._heap)
                    return self._entries[key]
            self._changed.clear()
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._changed.wait())]
            if self.gate is not None:
                waiters.append(asyncio.ensure_future(self.gate.wait_closed()))
            try:
                await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def _round(self, entry: Entry) -> None:
        started = self._now()
        operator_metrics.record_lateness(started, None if entry.woken else entry.due)
        entry.woken, entry.rerun = False, None
        delay: float | None = None
        try:
            delay = await entry.job.tick()
        except asyncio.CancelledError:
            if not entry.removed:  # the operator stops; an entry removed meanwhile just ends
                raise
        except Exception as e:  # one bad round never ends the loop: back off instead
            self.logger.exception(f"The round of {entry.key} failed: {e}")
            delay = entry.job.backoff()
        finally:
            entry.running = None
            assert self._slots is not None
            self._slots.release()
        if entry.removed or delay is None:
            return
        entry.due = started + delay  # rounds start every `delay` seconds, however long one takes
        if entry.rerun is not None:  # woken during the round: again now, at the rank it was woken with
            entry.woken = True
            self._push(entry, entry.rerun)
        else:
            self._push(entry, DUE)

    # --- the heap ----------------------------------------------------------------------------------
    def _push(self, entry: Entry, rank: int) -> None:
        self._seq += 1
        entry.seq, entry.rank = self._seq, rank
        order = entry.due if rank == DUE else 0.0  # woken entries: first come, first served
        heapq.heappush(self._heap, (rank, order, self._seq, entry.key))
        self._changed.set()

    def _stale(self, item: tuple[int, float, int, Hashable]) -> bool:
        _, _, seq, key = item
        entry = self._entries.get(key)
        return entry is None or entry.running is not None or entry.seq != seq

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()
