"""The ScaledApp controller: the owned Deployment, and one autoscaling loop per ScaledApp.

- ``reconcile_workload`` (create/update/resume): validates the target and creates or updates the
  Deployment a ``spec.template`` asks for. A missing target is retried with growing backoff.
- ``autoscale`` (a kopf daemon per object): every ``pollingInterval`` seconds (re-read on each
  round, and a spec change is picked up within a second) it reads the workload's ``/scale``,
  reads every metric concurrently (each with its own timeout), runs the pure policy, scales the
  workload when the decision changes its count (``mode: Auto``), emits events, and patches the
  status only when something in it changed. Its errors never escape: a broken target shows as
  ``Ready=False`` and is retried with backoff, a broken metric source as a Warning event and the
  metric's ``error`` in status.

The owned Deployments are watched (a kopf index, ``scaledapp_deployment_index``): a round reads
its Deployment's replicas from there and asks the apiserver only when the Deployment is
missing, foreign or out of date. A settled ScaledApp therefore costs no request per round
beyond its metric reads.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from kopfscale import GROUP, VERSION
from kopfscale import metrics as operator_metrics
from kopfscale.conditions import rfc3339, utcnow
from kopfscale.scaledapp import sources, workload
from kopfscale.scaledapp import status as st
from kopfscale.scaledapp.history import History, parse_time
from kopfscale.scaledapp.policy import Decision, decide, keep_seconds
from kopfscale.scaledapp.sources import MetricReading, SourceContext
from kopfscale.scaledapp.spec import MetricSpec, ScaledAppSpec, SpecError, parse
from kopfscale.scaledapp.workload import ApiException, TargetError

PLURAL = "scaledapps"
BACKOFF_MAX = 60.0  # seconds between retries of an unusable target
INVALID_SPEC_RETRY = 30.0
WAKE_MEMO_KEY = "autoscaler_wake"  # the per-object memo's event: "the spec changed, start a round"


def initial_replicas(spec: ScaledAppSpec) -> int:
    """The owned Deployment starts at minReplicas, but at 1 when that is 0 (zero comes by cooldown)."""
    return max(spec.min_replicas, 1)


def owned_deployment(body: kopf.Body, spec: ScaledAppSpec) -> dict[str, Any]:
    """The Deployment ``spec.template`` asks for, owned by the ScaledApp (garbage-collected with it)."""
    assert spec.template is not None
    meta = body.meta
    manifest = workload.deployment_manifest(
        str(meta["name"]), str(meta["namespace"]), spec.template, initial_replicas(spec)
    )
    kopf.append_owner_reference(manifest, owner=body)
    return manifest


def announce_deployment(body: kopf.Body, action: str, logger: kopf.Logger | logging.Logger) -> None:
    if action != "unchanged":
        message = f"Deployment/{body.meta['name']} {action}"
        kopf.info(body, reason=f"Deployment{action.capitalize()}", message=message)
        logger.info(message)


# --- the metric sources' clients live as long as the operator ---------------------------------------
@kopf.on.startup()
async def open_sources(**_: Any) -> None:
    await sources.open_all()


@kopf.on.cleanup()
async def close_sources(**_: Any) -> None:
    await sources.close_all()


# --- the workload ---------------------------------------------------------------------------------------
@kopf.index("apps", "v1", "deployments", labels={workload.SCALEDAPP_LABEL: kopf.PRESENT})
def scaledapp_deployment_index(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> dict[tuple[str | None, str], dict[str, Any]]:
    return {(namespace, name): workload.trim_deployment(body)}


def indexed_deployment(index: Mapping[Any, Any] | None, namespace: str, name: str) -> dict[str, Any] | None:
    if index is None or (namespace, name) not in index:
        return None
    values = list(index[(namespace, name)])
    return dict(values[0]) if values else None


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
    **_: Any,
) -> None:
    assert namespace is not None  # the CRD is namespaced
    try:
        parsed = parse(spec)
    except SpecError as e:
        raise kopf.PermanentError(f"invalid spec: {e}") from e
    try:
        if parsed.template is not None:
            action, _scale = workload.ensure_deployment(owned_deployment(body, parsed), uid)
            announce_deployment(body, action, logger)
        else:
            target = workload.target_of(parsed, name, namespace)
            workload.read_scale(target)
    except TargetError as e:
        raise kopf.TemporaryError(f"{e.reason}: {e.message}", delay=min(2.0**retry, BACKOFF_MAX)) from e


# --- the autoscaling loop ------------------------------------------------------------------------------
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def autoscale(
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: kopf.Logger,
    scaledapp_deployment_index: kopf.Index[Any, Any] | None = None,
    **_: Any,
) -> None:
    loop = Autoscaler(body, logger, scaledapp_deployment_index)
    wake = memo[WAKE_MEMO_KEY] = asyncio.Event()  # memo is this object's own (kopf copies it per object)
    await _run(loop, stopped, wake, logger)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def wake_autoscaler(memo: kopf.Memo, **_: Any) -> None:
    """A spec change starts a new round now rather than after the current pollingInterval."""
    wake = memo.get(WAKE_MEMO_KEY)
    if isinstance(wake, asyncio.Event):
        wake.set()


async def _run(
    loop: Autoscaler, stopped: kopf.DaemonStopped, wake: asyncio.Event, logger: kopf.Logger
) -> None:
    # Sleep until the round is due, the spec changes, or kopf stops the daemon; one waiter per
    # wake-up (a thousand loops polling for spec changes every second cost a fifth of a core).
    clock = asyncio.get_running_loop()
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        while not stopped:
            started = clock.time()
            wake.clear()  # before the round reads the spec: a change during the round wakes the next
            try:
                delay = await loop.tick()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never let one bad round kill the loop; back off instead
                logger.exception(f"Autoscaling round failed: {e}")
                delay = loop.backoff()
            if stopped or wake.is_set():
                continue
            woken = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait(
                    {stopping, woken},
                    timeout=max(0.0, started + delay - clock.time()),  # rounds start every `delay` s
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                woken.cancel()
    finally:
        stopping.cancel()


class Autoscaler:
    """The state of one ScaledApp's loop, kept between rounds (and in status across restarts)."""

    def __init__(
        self,
        body: kopf.Body,
        logger: kopf.Logger | logging.Logger,
        deployments: Mapping[Any, Any] | None = None,
    ) -> None:
        self.body = body
        self.deployments = deployments
        self.logger = logger
        previous = body.get("status") or {}
        self.history = History.from_status(previous.get("history"), utcnow())
        self.last_scale_time: str | None = previous.get("lastScaleTime")
        self.written: dict[str, Any] | None = None  # the status as we last wrote it
        self.errors: dict[str, str] = {
            m["name"]: m["error"] for m in previous.get("metrics") or [] if m.get("error")
        }
        self.observed_desired: int | None = None
        self.failed_rounds = 0
        # The parsed spec and the Deployment it asks for, per generation: both are pure
        # functions of the spec, and rebuilding the manifest (copy + hash) every round showed.
        self._parsed: tuple[Any, ScaledAppSpec, dict[str, Any] | None] | None = None

    def parsed(self, generation: Any) -> tuple[ScaledAppSpec, dict[str, Any] | None]:
        """The spec of ``generation`` and its owned Deployment manifest; SpecError if invalid."""
        if self._parsed is None or self._parsed[0] != generation:
            spec = parse(self.body.get("spec") or {})
            manifest = owned_deployment(self.body, spec) if spec.template is not None else None
            self._parsed = (generation, spec, manifest)
        return self._parsed[1], self._parsed[2]

    @property
    def name(self) -> str:
        return str(self.body.meta["name"])

    @property
    def namespace(self) -> str:
        return str(self.body.meta["namespace"])

    def backoff(self) -> float:
        self.failed_rounds += 1
        return float(min(2 ** (self.failed_rounds - 1), BACKOFF_MAX))

    async def tick(self) -> float:
        now = utcnow()
        generation = self.body.meta.get("generation")
        try:
            spec, manifest = self.parsed(generation)
        except SpecError as e:
            await self.write(
                now, generation, [st.ready_condition(False, "InvalidSpec", str(e), generation, now)], {}
            )
            return INVALID_SPEC_RETRY
        try:
            if manifest is not None:
                target = workload.target_of(spec, self.name, self.namespace)  # no lookup needed
                # The owned Deployment is checked (and recreated if someone deleted it) on every
                # round; one that this ScaledApp does not own is never scaled (DeploymentConflict).
                uid = str(self.body.meta["uid"])
                indexed = indexed_deployment(self.deployments, self.namespace, self.name)
                known = workload.indexed_state(indexed, manifest, uid)
                if known is not None:
                    scale = known
                else:
                    action, scale = await asyncio.to_thread(workload.ensure_deployment, manifest, uid)
                    announce_deployment(self.body, action, self.logger)
            else:
                target = await asyncio.to_thread(workload.target_of, spec, self.name, self.namespace)
                scale = await asyncio.to_thread(workload.read_scale, target)
        except TargetError as e:
            await self.not_ready(now, generation, e.reason, e.message)
            return self.backoff()
        except ApiException as e:
            await self.not_ready(
                now, generation, "ApiError", f"reading the workload failed: {e.status} {e.reason}"
            )
            return self.backoff()

        ctx = SourceContext(
            namespace=self.namespace, pod_selector=scale.selector, now=utcnow, scaledapp=self.name
        )
        readings = await asyncio.gather(*(self.read(m, ctx) for m in spec.metrics))
        for metric, reading in zip(spec.metrics, readings, strict=True):
            if reading.error is not None:
                operator_metrics.record_source_error(self.namespace, self.name, metric.type)
        created = parse_time(self.body.meta.get("creationTimestamp"))
        decision = decide(spec, scale.replicas, readings, self.history, now=now, created=created)
        operator_metrics.record_decision(
            self.namespace, self.name, scale.replicas, decision.desired, spec.mode
        )
        history = decision.history
        replicas = scale.replicas
        if spec.mode == "Auto" and decision.desired != replicas:
            try:
                await asyncio.to_thread(workload.patch_scale, target, decision.desired)
            except (TargetError, ApiException) as e:
                message = e.message if isinstance(e, TargetError) else f"{e.status} {e.reason}"
                kopf.warn(
                    self.body,
                    reason="ScaleFailed",
                    message=f"scaling {target} to {decision.desired}: {message}",
                )
                self.history = history
                await self.not_ready(now, generation, "ScaleFailed", f"scaling {target} failed: {message}")
                return self.backoff()
            history = history.record_scale_event(now, decision.desired - replicas, keep_seconds(spec)[1])
            self.last_scale_time = rfc3339(now)
            self.announce(decision, str(target), "ScaledUp", "ScaledDown")
            replicas = decision.desired
        elif spec.mode == "Observe" and decision.desired not in (replicas, self.observed_desired):
            self.announce(decision, str(target), "WouldScaleUp", "WouldScaleDown")
        self.observed_desired = decision.desired if decision.desired != replicas else None
        self.history = history
        self.failed_rounds = 0
        self.report_errors(decision)

        mode = "observing (mode: Observe, never scaling)" if spec.mode == "Observe" else "scaling"
        ready = st.ready_condition(
            True, "TargetScalable", f"{mode} {target} every {spec.polling_interval}s", generation, now
        )
        fields = {
            "target": str(target),
            "selector": scale.selector,
            "replicas": replicas,
            "desiredReplicas": decision.desired,
            "lastScaleTime": self.last_scale_time,
            "metrics": [st.metric_status(m) for m in decision.metrics],
            "lastDecision": st.decision_status(decision),
            "history": history.to_status(),
        }
        await self.write(
            now, generation, [ready, *st.decision_conditions(decision, spec, generation, now)], fields
        )
        return float(spec.polling_interval)

    async def read(self, metric: MetricSpec, ctx: SourceContext) -> MetricReading:
        return await sources.read(metric.name, metric.source, ctx)

    def announce(self, d: Decision, target: str, up: str, down: str) -> None:
        reason = up if d.desired > d.current else down
        driver = f" driven by {d.driver}" if d.driver else ""
        message = f"{target} {d.current} -> {d.desired}{driver}: {d.explanation}"
        kopf.info(self.body, reason=reason, message=message[:1000])
        self.logger.info(f"{reason}: {message}")

    def report_errors(self, d: Decision) -> None:
        """A Warning event when a source starts failing (or fails differently); Normal when it is back."""
        for m in d.metrics:
            previous = self.errors.get(m.name)
            if m.error is not None and m.error != previous:
                kopf.warn(self.body, reason="MetricFailed", message=f"metric {m.name}: {m.error}"[:1000])
                self.errors[m.name] = m.error
            elif m.error is None and previous is not None:
                kopf.info(self.body, reason="MetricRecovered", message=f"metric {m.name} is readable again")
                del self.errors[m.name]

    async def not_ready(
        self, now: datetime.datetime, generation: int | None, reason: str, message: str
    ) -> None:
        if (self.current_status().get("conditions") or []) == [] or self._ready_changed(reason, message):
            self.logger.warning(f"Not ready: {reason}: {message}")
        await self.write(now, generation, [st.ready_condition(False, reason, message, generation, now)], {})

    def _ready_changed(self, reason: str, message: str) -> bool:
        for c in self.current_status().get("conditions") or []:
            if c.get("type") == st.READY:
                return bool(c.get("reason") != reason or c.get("message") != message)
        return True

    def current_status(self) -> dict[str, Any]:
        return self.written if self.written is not None else dict(self.body.get("status") or {})

    async def write(
        self,
        now: datetime.datetime,
        generation: int | None,
        conditions: list[dict[str, Any]],
        fields: Mapping[str, Any],
    ) -> None:
        previous = self.current_status()
        new = st.compose(previous, generation=generation, now=now, conditions=conditions, fields=fields)
        if not st.changed(previous, new):
            return
        patch = st.to_patch(previous, new)
        try:
            await asyncio.to_thread(workload.patch_status, self.name, self.namespace, patch)
        except ApiException as e:
            if e.status == 404:  # deleted meanwhile; the daemon is being stopped
                return
            raise
        self.written = new
