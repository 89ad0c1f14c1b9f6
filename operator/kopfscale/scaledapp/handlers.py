"""The ScaledApp controller's kopf wiring: which events start what. The work is elsewhere.

- create/update/resume: the owned Deployment a ``spec.template`` asks for is created or updated
  at once (:mod:`api`), or the ``scaleTargetRef`` is checked; a missing target is retried with
  the shared backoff.
- one autoscaling loop per ScaledApp (:mod:`autoscaler`), a kopf daemon; a spec change wakes it.
- the owned Deployments are watched (a kopf index): a round reads a settled Deployment's scale
  from there and asks the apiserver only when it is missing, foreign or out of date.
- the metric sources' clients open and close with the operator.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from kopfscale import GROUP, SCALEDAPPS, VERSION
from kopfscale import metrics as operator_metrics
from kopfscale.kube import backoff, indexes
from kopfscale.kube.errors import ApiError
from kopfscale.scaledapp import conflicts, deployment, flapping
from kopfscale.scaledapp.autoscaler import Api, Autoscaler, announce_deployment, run
from kopfscale.scaledapp.spec import ScaledAppSpec, SpecError, parse
from kopfscale.scaledapp.workload import TargetError
from kopfscale.wiring import from_memo

PLURAL = SCALEDAPPS
WAKE_MEMO_KEY = "autoscaler_wake"  # the per-object memo's event: "the spec changed, start a round"
MEMO_KEY = "scaledapp"


@dataclass(frozen=True)
class Wiring:
    """What the ScaledApp handlers are given by the composition root (``kopfscale.app.wire``)."""

    api: Api
    replay: flapping.Replay | None = None  # the simulator's, for the flapping suggestion


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


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile_workload(
    *,
    body: kopf.Body,
    spec: kopf.Spec,
    name: str,
    namespace: str | None,
    uid: str,
    retry: int,
    logger: kopf.Logger,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    assert namespace is not None  # the CRD is namespaced
    api = wiring(memo).api
    try:
        parsed = parse(spec)
    except SpecError as e:
        raise kopf.PermanentError(f"invalid spec: {e}") from e
    try:
        if parsed.template is not None:
            action, _scale = api.ensure_deployment(deployment.owned_deployment(body, parsed), uid)
            announce_deployment(api, body, action, logger)
        else:
            retire_old_deployment(api, body, parsed, logger)
            api.read_scale(api.find_target(parsed, name, namespace))
    except TargetError as e:
        raise kopf.TemporaryError(f"{e.reason}: {e.message}", delay=backoff(retry + 1)) from e


def retire_old_deployment(api: Api, body: kopf.Body, spec: ScaledAppSpec, logger: kopf.Logger) -> None:
    """A switch from ``template`` to ``scaleTargetRef`` leaves no owned, unscaled Deployment behind."""
    name, namespace, uid = str(body.meta["name"]), str(body.meta["namespace"]), str(body.meta["uid"])
    ref = spec.scale_target_ref
    keep = ref is not None and ref.group == "apps" and ref.kind == "Deployment" and ref.name == name
    try:
        done = api.retire_deployment(namespace, name, uid, keep=keep)
    except ApiError as e:
        logger.warning(f"could not retire the Deployment the template ran: {e}")
        return
    if done is not None:
        message = f"Deployment/{name} {done}: spec.template was replaced by spec.scaleTargetRef" + (
            " (which names it; it is yours now)" if done == "released" else ""
        )
        api.post_event(body, "Normal", f"Deployment{done.capitalize()}", message)
        logger.info(message)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def autoscale(
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    scaledapp_deployment_index: kopf.Index[Any, Any] | None = None,
    **kwargs: Any,
) -> None:
    wired = wiring(memo)
    loop = Autoscaler(
        body, logger, wired.api, scaledapp_deployment_index, rivals_in(kwargs), replay=wired.replay
    )
    wake = memo[WAKE_MEMO_KEY] = asyncio.Event()  # memo is this object's own (kopf copies it per object)
    try:
        await run(loop, stopped, wake, logger)
    finally:  # its last round may have run after the delete handler forgot its series
        operator_metrics.forget(loop.namespace, loop.name)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def wake_autoscaler(memo: kopf.Memo, **_: Any) -> None:
    """A spec change starts a new round now rather than after the current pollingInterval."""
    wake = memo.get(WAKE_MEMO_KEY)
    if isinstance(wake, asyncio.Event):
        wake.set()
