"""kopf handlers for Greeters and their children.

Every handler does the same level-based thing, :func:`reconcile_greeter`: read the Greeter,
make the children match it (writing only what differs), recompute the status (writing it only
if it changed). What differs between handlers is only *why* they run:

* create/update/resume of a Greeter: its spec changed, or the operator (re)started;
* any event of a labelled child Deployment/Service: someone edited or deleted it (drift), or
  its status moved (Pods became ready) — so drift is repaired within seconds, without a resync.
  kopf re-lists the children whenever its watch restarts (``settings.watching``), which also
  re-runs this for every child now and then, a slow safety net for a failed repair.

Reads come from kopf indexes of the Greeters and their children (:mod:`cache`), not from the
apiserver: a child's status update (the controller-manager writes several per rollout) then
costs no request at all unless the Greeter's status changes, and a burst of creations costs the
creations and the status writes, nothing more.

No timers or daemons: kopf would put a finalizer on every Greeter to stop them, and deletion
must stay plain garbage collection.

Sync handlers on purpose: kopf runs them in its thread pool, and the official client is sync.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import kopf

from kopfscale import GROUP, VERSION
from kopfscale.greeter import cache, manifests, reconcile, status
from kopfscale.kube import backoff, ownership
from kopfscale.settings import OperatorSettings
from kopfscale.wiring import from_memo

PLURAL = reconcile.PLURAL
MEMO_KEY = "greeter"


@dataclass(frozen=True)
class Wiring:
    """What the Greeter handlers are given by the composition root (``kopfscale.app.wire``)."""

    api: reconcile.Api
    settings: OperatorSettings


def wiring(memo: Mapping[str, Any]) -> Wiring:
    return from_memo(memo, MEMO_KEY, Wiring)


# One reconciliation per Greeter at a time in this process: a Greeter's own handler and its
# children's drift handlers would otherwise race each other into needless write conflicts.
_locks: weakref.WeakValueDictionary[str, threading.Lock] = weakref.WeakValueDictionary()
_locks_guard = threading.Lock()


def _lock_for(uid: str) -> threading.Lock:
    with _locks_guard:
        lock = _locks.get(uid)
        if lock is None:
            lock = _locks[uid] = threading.Lock()
        return lock


def _event_target(greeter: Mapping[str, Any]) -> kopf.Body:
    """kopf posts events about a body; the Greeter may come from kopf or from our own read."""
    return greeter if isinstance(greeter, kopf.Body) else kopf.Body(cast(kopf.RawBody, dict(greeter)))


def _event_reason(action: reconcile.Action, drift: bool) -> str:
    if drift:
        return "DriftRestored"
    return "Created" if action.verb == "created" else "Updated"


# --- the indexes: what the watches last saw, trimmed to what the controller reads ---------------
#: Our writes whose watch events have not been indexed yet (shared by all handlers).
recent_writes = cache.RecentWrites()


@kopf.index(GROUP, VERSION, PLURAL)
def greeter_index(body: kopf.Body, **_: Any) -> dict[cache.Key, str]:
    return {cache.key_of(body): cache.pack(cache.trim_greeter(body))}


@kopf.index("apps", "v1", "deployments", labels=dict(manifests.CHILD_SELECTOR_LABELS))
def greeter_deployment_index(body: kopf.Body, **_: Any) -> dict[cache.Key, str]:
    return {cache.key_of(body): cache.pack(cache.trim_child(body))}


@kopf.index("", "v1", "services", labels=dict(manifests.CHILD_SELECTOR_LABELS))
def greeter_service_index(body: kopf.Body, **_: Any) -> dict[cache.Key, str]:
    return {cache.key_of(body): cache.pack(cache.trim_child(body))}


def api_for(kwargs: Mapping[str, Any]) -> reconcile.Api:
    """The context's API, reading from kopf's indexes (a handler's kwargs carry both; the
    indexes are always there in the operator, a bare harness may go without)."""
    api = wiring(kwargs["memo"]).api
    if "greeter_index" not in kwargs:
        return api
    return cache.CachedApi(
        api,
        kwargs["greeter_index"],
        kwargs["greeter_deployment_index"],
        kwargs["greeter_service_index"],
        recent_writes,
    )


def reconcile_greeter(
    greeter: Mapping[str, Any],
    logger: logging.Logger | logging.LoggerAdapter[Any],
    *,
    api: reconcile.Api,
    config: OperatorSettings,
    warn: bool = True,
) -> reconcile.Result:
    """Make the children and status match ``greeter``; report failures, then re-raise them."""
    meta = greeter["metadata"]
    # The spec was already fully applied once: any difference now is someone else's change.
    drift = (greeter.get("status") or {}).get("observedGeneration") == meta.get("generation")
    desired = manifests.desired_for(greeter, config)  # once per pass: children and status use it
    with _lock_for(meta["uid"]):
        try:
            result = reconcile.ensure_children(api, greeter, config, desired)
        except reconcile.ChildTerminating:
            statuses.remember(meta["uid"], reconcile.sync_status(api, greeter, config, desired=desired))
            raise
        except reconcile.ReconcileError as e:
            # kopf logs the TemporaryError (and posts it); the Warning event below is ours.
            logger.debug(f"Greeter {meta['name']} is not reconciled: {e}")
            try:
                failed = reconcile.sync_status(api, greeter, config, failure=e.failure(), desired=desired)
                statuses.remember(meta["uid"], failed)
            except reconcile.ReconcileError as status_error:
                logger.warning(f"could not report the failure in status: {status_error}")
            before = status.ready_of(greeter.get("status")) or {}
            repeated = (before.get("reason"), before.get("message")) == (e.reason, str(e))
            if warn and not repeated:  # one Warning event per distinct failure, not one per retry
                kopf.warn(_event_target(greeter), reason=e.reason, message=str(e))
            raise
        for action in result.actions:
            reason = _event_reason(action, drift)
            message = action.describe()
            if drift:
                message += " (it had been changed or deleted outside the Greeter)"
            kopf.info(_event_target(greeter), reason=reason, message=message[0].upper() + message[1:])
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


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
def reconcile_children(body: kopf.Body, retry: int, logger: kopf.Logger, **kwargs: Any) -> None:
    """The Greeter changed (or we restarted): converge, retrying failures with backoff."""
    config = wiring(kwargs["memo"]).settings
    try:
        reconcile_greeter(body, logger, api=api_for(kwargs), config=config)
    except reconcile.ChildTerminating as e:
        raise kopf.TemporaryError(str(e), delay=1) from e
    except reconcile.ReconcileError as e:
        raise kopf.TemporaryError(str(e), delay=backoff(retry + 1, transient=e.transient)) from e


DRIFT_ATTEMPTS = 4


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


statuses = StatusDigests()


@kopf.on.event(GROUP, VERSION, PLURAL)
def greeter_status_changed(body: kopf.Body, type: str | None, logger: kopf.Logger, **kwargs: Any) -> None:
    """A Greeter's status changed and it was not our write: put back what is true (a status edited
    by someone else is corrected at once, not at the next spec or child change)."""
    uid = str(body.meta.get("uid"))
    if type == "DELETED":
        statuses.forget(uid)
        return
    status = body.get("status") or {}
    # Never reconciled, or a spec change in flight: the create/update handlers have it.
    if status.get("observedGeneration") != body.meta.get("generation") or statuses.is_ours(uid, status):
        return
    try:
        reconcile_greeter(
            body, logger, api=api_for(kwargs), config=wiring(kwargs["memo"]).settings, warn=False
        )
    except reconcile.ReconcileError as e:
        logger.debug(f"status not corrected now ({e}); the next event or handler retry does")


def _owning_greeter(child: Mapping[str, Any]) -> tuple[str, str] | None:
    ref = ownership.controller_of(child)
    if ref is None or ref.get("kind") != manifests.KIND:
        return None
    if str(ref.get("apiVersion", "")).split("/")[0] != GROUP:
        return None
    return str(ref["name"]), str(ref["uid"])


@kopf.on.event("apps", "v1", "deployments", labels=dict(manifests.CHILD_SELECTOR_LABELS))
@kopf.on.event("", "v1", "services", labels=dict(manifests.CHILD_SELECTOR_LABELS))
def child_changed(body: kopf.Body, type: str | None, logger: kopf.Logger, **kwargs: Any) -> None:
    """A child was added, changed or deleted: repair drift now and refresh the owner's status.

    Event handlers are not retried by kopf, so transient failures are retried here briefly;
    the Greeter's own handlers and the next re-listing catch what is left.
    """
    owner = _owning_greeter(body)
    if owner is None:
        return
    name, uid = owner
    namespace = body.metadata.namespace
    if namespace is None:
        return
    via = api_for(kwargs)  # one for all attempts: what refused a write is then read from the apiserver
    config = wiring(kwargs["memo"]).settings
    for attempt in range(DRIFT_ATTEMPTS):
        greeter = via.get_greeter(namespace, name)
        if greeter is None or greeter["metadata"].get("uid") != uid:
            return  # The owner is gone: garbage collection takes the child; nothing to restore.
        if greeter["metadata"].get("deletionTimestamp"):
            return
        try:
            reconcile_greeter(greeter, logger, api=via, config=config, warn=attempt == DRIFT_ATTEMPTS - 1)
            return
        except reconcile.ChildTerminating:
            return  # Its DELETED event follows; the child is recreated then.
        except reconcile.ReconcileError as e:
            if attempt == DRIFT_ATTEMPTS - 1:
                logger.warning(f"could not repair {body.get('kind')} {body.metadata.name} ({type}): {e}")
                return
            time.sleep(backoff(attempt + 1))
