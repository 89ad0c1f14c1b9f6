"""Greeter passes in the operator's scheduler: one pass per Greeter at a time, the latest state only.

Every event that may change what a Greeter's children or status should be — the Greeter created or
changed, its status edited by someone else, any event of a child (drift, or its status moving as
Pods become ready) — *wakes* the Greeter's entry in a :class:`~kopfscale.scheduler.Scheduler`
(the same scheduler class the ScaledApp rounds use). A pass then reads the Greeter and its children
as the watches last saw them and makes them match (:func:`reconcile_greeter`).

Why not a kopf change handler per event (as before): under a burst, a Greeter gets a dozen events
(its own, its children's, its status writes coming back), and each ran a whole pass in a thread,
waiting on the Greeter's lock, on states already outdated. Woken entries instead coalesce: events
that arrive while a pass is queued or running cost one more pass at most, which reads the newest
state; so the status catches up with the children as soon as the backlog is gone, and never stays
behind because the last event's pass read an older state. kopf's change handlers also wrote their
bookkeeping into the Greeter's annotations (two patches per Greeter); level-based passes need none.

A failed pass is retried with the shared backoff (:func:`kopfscale.kube.backoff`); a Greeter that
is fine is passed again every :data:`RESYNC` seconds anyway (a pass over a settled Greeter reads
only the watches' indexes and writes nothing), a safety net for an event lost in a fault.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf

from kopfscale.greeter import manifests, reconcile, status
from kopfscale.kube import backoff
from kopfscale.scheduler import Scheduler
from kopfscale.settings import OperatorSettings

#: Seconds between two passes of a Greeter nothing woke: the safety net, not the way things happen.
RESYNC = 300.0
#: A child being deleted (foreground cascading) is recreated once it is gone: look again soon.
TERMINATING_RETRY = 1.0
#: After a pass that wrote children, the next pass (the status) at the latest this many seconds later.
FOLLOW_UP = 2.0

Logger = logging.Logger | logging.LoggerAdapter[Any]


def _event_target(greeter: Mapping[str, Any]) -> kopf.Body:
    """kopf posts events about a body; the Greeter may come from kopf or from our own read."""
    return greeter if isinstance(greeter, kopf.Body) else kopf.Body(cast(kopf.RawBody, dict(greeter)))


def _announce(greeter: Mapping[str, Any], actions: list[reconcile.Action], drift: bool) -> None:
    """One Normal event per pass that wrote: ``Created``, ``Updated`` or ``DriftRestored``, naming
    every child it wrote (a new Greeter gets one event for its Deployment and Service, not two)."""
    if not actions:
        return
    if drift:
        reason = "DriftRestored"
    else:
        reason = "Created" if all(a.verb == "created" for a in actions) else "Updated"
    message = " and ".join(a.describe() for a in actions)
    if drift:
        message += " (it had been changed or deleted outside the Greeter)"
    kopf.info(_event_target(greeter), reason=reason, message=message[0].upper() + message[1:])


class StatusDigests:
    """A digest of the status each Greeter was last reconciled to, so that a status event is
    recognised as our own write (nothing to do) or someone else's edit (correct it) for free."""

    def __init__(self) -> None:
        self._digests: dict[str, str] = {}
        self._lock = threading.Lock()

    @staticmethod
    def digest(status: Mapping[str, Any] | None) -> str:
        return hashlib.blake2b(json.dumps(status or {}, sort_keys=True).encode(), digest_size=12).hexdigest()

    def remember(self, uid: str, status: Mapping[str, Any] | None) -> None:
        if status is not None:
            with self._lock:
                self._digests[uid] = self.digest(status)

    def is_ours(self, uid: str, status: Mapping[str, Any] | None) -> bool:
        with self._lock:
            return self._digests.get(uid) == self.digest(status)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._digests.pop(uid, None)


#: Ready reasons that are progress, not failures: they get no Warning event.
_PROGRESS = {"AllReplicasReady", "RollingOut", "ReplicasNotReady", "Reconciling"}


def warn_on_new_failure(greeter: Mapping[str, Any], written: Mapping[str, Any] | None) -> None:
    """One Warning event when Ready turns to a failure the Deployment reports (not per pass)."""
    before = status.ready_of(greeter.get("status"))
    after = status.ready_of(written)
    if after is None or after.get("status") != "False" or after.get("reason") in _PROGRESS:
        return
    if before is not None and (before.get("reason"), before.get("message")) == (
        after.get("reason"),
        after.get("message"),
    ):
        return
    kopf.warn(
        _event_target(greeter), reason=str(after.get("reason")), message=str(after.get("message"))[:1000]
    )


def reconcile_greeter(
    greeter: Mapping[str, Any],
    logger: Logger,
    *,
    api: reconcile.Api,
    config: OperatorSettings,
    statuses: StatusDigests | None = None,
) -> reconcile.Result:
    """One pass: make the children match ``greeter``, or, when they already do, the status match the
    children; report failures, then re-raise.

    A pass that wrote children leaves the status to the next pass (:data:`FOLLOW_UP` at the
    latest; the children's watch events wake it sooner), which sees them as the watch does.
    Failures become the status's conditions and one Warning event per distinct failure (not one
    per retry); writes become one Normal event.
    """
    meta = greeter["metadata"]
    statuses = statuses if statuses is not None else StatusDigests()
    # The spec was already fully applied once: any difference now is someone else's change.
    drift = (greeter.get("status") or {}).get("observedGeneration") == meta.get("generation")
    desired = manifests.desired_for(greeter, config)  # once per pass: children and status use it
    try:
        result = reconcile.ensure_children(api, greeter, config, desired)
    except reconcile.ChildTerminating:
        statuses.remember(meta["uid"], reconcile.sync_status(api, greeter, config, desired=desired))
        raise
    except reconcile.ReconcileError as e:
        logger.debug(f"Greeter {meta['name']} is not reconciled: {e}")
        try:
            failed = reconcile.sync_status(api, greeter, config, failure=e.failure(), desired=desired)
            statuses.remember(meta["uid"], failed)
        except reconcile.ReconcileError as status_error:
            logger.warning(f"could not report the failure in status: {status_error}")
        before = status.ready_of(greeter.get("status")) or {}
        if (before.get("reason"), before.get("message")) != (e.reason, str(e)):
            logger.warning(f"Not reconciled: {e.reason}: {e}")
            kopf.warn(_event_target(greeter), reason=e.reason, message=str(e)[:1000])
        raise
    _announce(greeter, result.actions, drift)
    if result.actions:
        # The children just written are what the status reports, and their watch events wake the
        # next pass at once: that pass writes the status. Under a burst it runs after the backlog,
        # often when the Pods are ready already: one status write instead of two.
        return result
    written = reconcile.sync_status(
        api,
        greeter,
        config,
        deployment=result.deployment,
        service=result.service,
        known_children=True,
        desired=desired,
    )
    warn_on_new_failure(greeter, written)
    statuses.remember(meta["uid"], written)
    return result


class GreeterPass:
    """One Greeter's entry in the scheduler: each tick is a pass over its latest known state."""

    def __init__(
        self,
        namespace: str,
        name: str,
        uid: str,
        logger: Logger,
        api: Callable[[], reconcile.Api],
        config: OperatorSettings,
        statuses: StatusDigests,
    ) -> None:
        self.namespace, self.name, self.uid = namespace, name, uid
        self.logger, self.api, self.config, self.statuses = logger, api, config, statuses
        self.failures = 0
        self.transient = False

    def backoff(self) -> float:
        self.failures += 1
        return backoff(self.failures, transient=self.transient)

    async def tick(self) -> float:
        return await asyncio.to_thread(self.run)

    def run(self) -> float:
        api = self.api()  # a fresh view per pass: what refused a write is then read from the server
        greeter = api.get_greeter(self.namespace, self.name)
        if greeter is None or greeter["metadata"].get("uid") != self.uid:
            return RESYNC  # gone (its DELETED event ends this entry) or replaced by a namesake
        if greeter["metadata"].get("deletionTimestamp"):
            return RESYNC  # garbage collection takes the children; nothing to restore
        try:
            result = reconcile_greeter(
                greeter, self.logger, api=api, config=self.config, statuses=self.statuses
            )
        except reconcile.ChildTerminating:
            return TERMINATING_RETRY
        except reconcile.ReconcileError as e:
            self.transient = e.transient
            return self.backoff()
        self.failures, self.transient = 0, False
        return FOLLOW_UP if result.actions else RESYNC


class Passes:
    """The Greeters the scheduler passes over, and which of their events wake them."""

    def __init__(self, scheduler: Scheduler, statuses: StatusDigests | None = None) -> None:
        self.scheduler = scheduler
        self.statuses = statuses if statuses is not None else StatusDigests()
        self._generations: dict[str, Any] = {}  # uid -> the generation last seen

    def seen(self, body: Mapping[str, Any], make: Callable[[], GreeterPass]) -> None:
        """A Greeter as the watch shows it now (not deleted)."""
        meta = body.get("metadata") or {}
        uid, generation = str(meta.get("uid")), meta.get("generation")
        if uid not in self.scheduler:
            self.scheduler.add(uid, make())
        elif self._generations.get(uid) != generation:
            self.scheduler.wake(uid, first=True)  # the spec changed: children to write
        elif not self.statuses.is_ours(uid, body.get("status")):
            self.scheduler.wake(uid)  # someone else wrote the status: put it back
        self._generations[uid] = generation

    def gone(self, uid: str) -> None:
        self.scheduler.remove(uid)
        self.statuses.forget(uid)
        self._generations.pop(uid, None)

    def wake(self, uid: str) -> None:
        """A child of this Greeter changed (drift, or its status moved)."""
        self.scheduler.wake(uid)

    async def wake_all(self) -> None:
        """After standing by (kopf peering): another replica acted; look at every Greeter again."""
        for uid in self.scheduler:
            self.scheduler.wake(uid)
