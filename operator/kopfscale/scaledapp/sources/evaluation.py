"""Evaluating a tenant's response (JSON parsing, JSONPath) without stalling the event loop.

The event loop serves every watch, every autoscaling loop and kopf's liveness probe; a
tenant's 1 MiB document searched with ``$..`` costs about a second of CPU. Small documents (the
usual few hundred bytes) are evaluated inline; larger ones in a few worker threads, at most one
per ScaledApp at a time (a shared read's evaluation is charged to one of the ScaledApps sharing it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

from kopfscale.scaledapp.sources.base import Askers

T = TypeVar("T")

#: Documents up to this size are evaluated on the event loop (a few milliseconds at most);
#: larger ones in :data:`EVALUATORS` worker threads.
INLINE_BYTES = 16 * 1024
EVALUATORS = 4


class Evaluator:
    """Evaluates large documents off the event loop, one at a time per ScaledApp.

    A read that times out stops waiting, but its evaluation runs to its end (Python threads
    cannot be killed); the ScaledApp's slot is freed only then, so one tenant never occupies
    more than one worker however often it retries. Bounded documents and the refused grammar
    keep that end near.

    A read shared by several ScaledApps (``shared``) is evaluated once, charged to the first of
    them whose slot is free: no ScaledApp runs two evaluations at once, and none waits behind
    another's (a ScaledApp busy with its own large documents cannot hold up a read it shares).
    """

    def __init__(self, workers: int = EVALUATORS) -> None:
        self._workers = workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._busy: set[tuple[str, str]] = set()
        self._waiters: set[asyncio.Event] = set()  # woken when a slot is freed

    async def __call__(self, size: int, askers: Askers, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``: inline when ``size`` (of the document) is small, else in a worker."""
        if size <= INLINE_BYTES:
            return fn(*args)
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self._workers, thread_name_prefix="kopfscale-eval"
            )
        key = await self._slot(askers)
        loop = asyncio.get_running_loop()
        future = self._pool.submit(fn, *args)

        def free(_: object) -> None:
            self._busy.discard(key)
            for waiter in self._waiters:
                waiter.set()

        def done(f: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(free, f)

        future.add_done_callback(done)
        return await asyncio.wrap_future(future)

    async def _slot(self, askers: Askers) -> tuple[str, str]:
        """The slot of the first asker that has it free, taken; waits while every asker is busy
        (their previous evaluations still running), woken by a freed slot or a new asker."""
        woken = asyncio.Event()
        stop_watching = askers.watch(woken.set)
        self._waiters.add(woken)
        try:
            while True:
                for tenant in askers.tenants:
                    key = (tenant.namespace, tenant.scaledapp)
                    if key not in self._busy:
                        self._busy.add(key)
                        return key
                woken.clear()
                await woken.wait()
        finally:
            self._waiters.discard(woken)
            stop_watching()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
