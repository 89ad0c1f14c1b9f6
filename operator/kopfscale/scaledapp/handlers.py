"""The ScaledApp controller's kopf wiring: which events start what. The work is elsewhere.

- every ScaledApp's rounds run in one scheduler (:mod:`kopfscale.scheduler`, :mod:`rounds`), not
  a kopf daemon per object: the watch events of ScaledApps, HPAs and owned Deployments tell it what
  exists and wake the rounds whose decision may have changed. A round does all the work: it
  creates or updates the owned Deployment a ``spec.template`` asks for, retires it after a switch
  to ``scaleTargetRef``, and retries a missing target with the shared backoff.
- only watch-event handlers and indexes: no change handler (kopf writes no bookkeeping
  annotations), no daemon, timer or mandatory delete handler (kopf puts no finalizer on a
  ScaledApp, and removes the one earlier releases put there).
- the owned Deployments are watched (a kopf index): a round reads a settled Deployment's scale
  from there and asks the apiserver only when it is missing, foreign or out of date.
- every autoscaler of a workload is indexed by its target: one autoscaler per workload.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from kopfscale import GROUP, SCALEDAPPS, VERSION
from kopfscale.kube import indexes
from kopfscale.scaledapp import conflicts, deployment, flapping
from kopfscale.scaledapp.autoscaler import Api, Autoscaler
from kopfscale.scaledapp.rounds import Rounds
from kopfscale.wiring import from_memo

PLURAL = SCALEDAPPS
MEMO_KEY = "scaledapp"


@dataclass(frozen=True)
class Wiring:
    """What the ScaledApp handlers are given by the composition root (``kopfscale.app.wire``)."""

    api: Api
    replay: flapping.Replay | None = None  # the simulator's, for the flapping suggestion
    rounds: Rounds | None = None  # the scheduler's registry (None: no rounds, e.g. a bare harness)


def wiring(memo: Mapping[str, Any]) -> Wiring:
    return from_memo(memo, MEMO_KEY, Wiring)


# --- every autoscaler of a workload, by its target: one autoscaler per workload (conflicts.py) ----------
def _by_target(key: conflicts.TargetKey | None, entry: conflicts.Autoscaler) -> dict[Any, str]:
    return {} if key is None else {key: indexes.pack(dataclasses.asdict(entry))}


@kopf.index(GROUP, VERSION, PLURAL)
def scaledapp_target_index(body: kopf.Body, **_: Any) -> dict[Any, str]:
    return _by_target(conflicts.scaledapp_target(body), conflicts.entry("ScaledApp", body))


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers")
def hpa_target_index(body: kopf.Body, **_: Any) -> dict[Any, str]:
    """HPAs, and through the HPAs it controls, KEDA's ScaledObjects."""
    return _by_target(conflicts.hpa_target(body), conflicts.hpa_entry(body))


def rivals_in(kwargs: Mapping[str, Any]) -> Callable[[conflicts.TargetKey], list[conflicts.Autoscaler]]:
    """Every autoscaler the indexes know for a target."""
    found = [kwargs.get("scaledapp_target_index"), kwargs.get("hpa_target_index")]

    def rivals(key: conflicts.TargetKey) -> list[conflicts.Autoscaler]:
        return [conflicts.Autoscaler(**body) for index in found for body in indexes.lookup_all(index, key)]

    return rivals


@kopf.index("apps", "v1", "deployments", labels={deployment.SCALEDAPP_LABEL: kopf.PRESENT})
def scaledapp_deployment_index(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[tuple[str | None, str], str]:
    return {(namespace, name): indexes.pack(deployment.trim_deployment(body))}


def _autoscaler_for(
    memo: Mapping[str, Any], logger: kopf.Logger, kwargs: Mapping[str, Any]
) -> Callable[[kopf.Body], Autoscaler]:
    """How to make the autoscaler of a ScaledApp first seen (the indexes come with every handler)."""
    wired = wiring(memo)

    def make(body: kopf.Body) -> Autoscaler:
        deployments = kwargs.get("scaledapp_deployment_index")
        return Autoscaler(body, logger, wired.api, deployments, rivals_in(kwargs), replay=wired.replay)

    return make


@kopf.on.event(GROUP, VERSION, PLURAL)
async def track_scaledapp(
    body: kopf.Body, type: str | None, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any
) -> None:
    """Every ScaledApp event: a new one starts its rounds, a spec change wakes them, a deletion
    (or its start: ``deletionTimestamp``) ends them at once."""
    rounds = wiring(memo).rounds
    if rounds is None:
        return
    rounds.scheduler.adopt_context()  # rounds post events as kopf handlers do (kopf's context)
    if type == "DELETED" or body.meta.get("deletionTimestamp"):
        rounds.gone(body)
    else:
        rounds.seen(body, _autoscaler_for(memo, logger, kwargs))


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers")
async def track_hpa(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """An HPA (or KEDA's, for a ScaledObject) appearing, moving or going wakes the ScaledApps of
    its target: the conflict shows, or clears, within a second."""
    rounds = wiring(memo).rounds
    if rounds is not None:
        rounds.hpa_seen(str(body.meta.get("uid")), None if type == "DELETED" else conflicts.hpa_target(body))


@kopf.on.event("apps", "v1", "deployments", labels={deployment.SCALEDAPP_LABEL: kopf.PRESENT})
async def track_owned_deployment(
    body: kopf.Body, type: str | None, name: str, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """An owned Deployment deleted or changing hands wakes its ScaledApp (recreated or refused at once)."""
    rounds = wiring(memo).rounds
    if rounds is None or namespace is None:
        return
    owners = tuple(sorted(str(ref.get("uid")) for ref in body.meta.get("ownerReferences") or []))
    rounds.deployment_seen(namespace, name, None if type == "DELETED" else owners)
