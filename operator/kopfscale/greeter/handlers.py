"""kopf wiring for Greeters and their children: which events wake which Greeter. The work is elsewhere.

Every handler here only tells the Greeter passes (:mod:`passes`) what the watches saw; a pass, run
by the operator's scheduler, makes the children match the Greeter and the status match the
children (:func:`passes.reconcile_greeter`), reading both from kopf's indexes (:mod:`cache`):

* a Greeter appears, its spec changes, or someone else edits its status: its pass runs now;
* any event of a labelled child Deployment/Service (an edit, a deletion, its status moving as Pods
  become ready) wakes its owner's pass: drift is repaired and the status refreshed within seconds;
* a Greeter deleted (or being deleted): its passes end; garbage collection takes the children.

Only watch-event handlers and indexes: kopf writes no bookkeeping into Greeters and puts no
finalizer on them (deletion stays plain garbage collection). All of them are async and quick —
the passes' blocking API calls run in the scheduler's workers, not in kopf's event processing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from kopfscale import GROUP, VERSION
from kopfscale.greeter import cache, manifests, passes, reconcile
from kopfscale.kube import ownership
from kopfscale.settings import OperatorSettings
from kopfscale.wiring import from_memo

PLURAL = reconcile.PLURAL
MEMO_KEY = "greeter"


@dataclass(frozen=True)
class Wiring:
    """What the Greeter handlers are given by the composition root (``kopfscale.app.wire``)."""

    api: reconcile.Api
    settings: OperatorSettings
    passes: passes.Passes | None = None  # the scheduler's registry (None: no passes, e.g. a bare harness)


def wiring(memo: Mapping[str, Any]) -> Wiring:
    return from_memo(memo, MEMO_KEY, Wiring)


# --- the indexes: what the watches last saw, trimmed to what the controller reads ---------------
#: Our writes whose watch events have not been indexed yet (shared by all passes).
recent_writes = cache.RecentWrites()


@kopf.index(GROUP, VERSION, PLURAL)
async def greeter_index(body: kopf.Body, **_: Any) -> dict[cache.Key, str]:
    return {cache.key_of(body): cache.pack(cache.trim_greeter(body))}


@kopf.index("apps", "v1", "deployments", labels=dict(manifests.CHILD_SELECTOR_LABELS))
async def greeter_deployment_index(body: kopf.Body, **_: Any) -> dict[cache.Key, str]:
    return {cache.key_of(body): cache.pack(cache.trim_child(body))}


@kopf.index("", "v1", "services", labels=dict(manifests.CHILD_SELECTOR_LABELS))
async def greeter_service_index(body: kopf.Body, **_: Any) -> dict[cache.Key, str]:
    return {cache.key_of(body): cache.pack(cache.trim_child(body))}


INDEXES = ("greeter_index", "greeter_deployment_index", "greeter_service_index")


def api_for(wired: Wiring, indexes: tuple[Any, ...] | None) -> reconcile.Api:
    """The API a pass uses: reads from kopf's indexes (every handler is given them; a bare
    harness may go without), writes to the API server."""
    if indexes is None:
        return wired.api
    greeters, deployments, services = indexes
    return cache.CachedApi(wired.api, greeters, deployments, services, recent_writes)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def greeter_changed(
    body: kopf.Body, type: str | None, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any
) -> None:
    """A Greeter appeared, changed or went away."""
    wired = wiring(memo)
    registry = wired.passes
    if registry is None:
        return
    registry.scheduler.adopt_context()  # passes post events as kopf handlers do (kopf's context)
    uid = str(body.meta.get("uid"))
    if type == "DELETED" or body.meta.get("deletionTimestamp"):
        registry.gone(uid)
        return
    namespace, name = str(body.meta.get("namespace")), str(body.meta.get("name"))
    indexes = tuple(kwargs[key] for key in INDEXES) if all(key in kwargs for key in INDEXES) else None

    def make() -> passes.GreeterPass:
        return passes.GreeterPass(
            namespace, name, uid, logger, lambda: api_for(wired, indexes), wired.settings, registry.statuses
        )

    registry.seen(body, make)


def _owning_greeter(child: Mapping[str, Any]) -> str | None:
    """The uid of the Greeter that controls this child, if one does."""
    ref = ownership.controller_of(child)
    if ref is None or ref.get("kind") != manifests.KIND:
        return None
    if str(ref.get("apiVersion", "")).split("/")[0] != GROUP:
        return None
    return str(ref["uid"])


@kopf.on.event("apps", "v1", "deployments", labels=dict(manifests.CHILD_SELECTOR_LABELS))
@kopf.on.event("", "v1", "services", labels=dict(manifests.CHILD_SELECTOR_LABELS))
async def child_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A child was added, changed or deleted: its Greeter's pass repairs drift and refreshes status."""
    registry = wiring(memo).passes
    owner = _owning_greeter(body)
    if registry is not None and owner is not None:
        registry.wake(owner)
