"""One ScaledApp's autoscaling loop: every round observes, decides, acts and reports.

- **observe**: the workload's ``/scale`` (the owned Deployment from the watch when it is settled,
  else from the apiserver, creating or updating it if need be) and every metric, concurrently;
- **decide**: the pure policy (:mod:`policy`) on those numbers and the remembered history;
- **act**: in mode ``Auto``, write ``/scale`` when the decision changes the count;
- **report**: events for what users should see, the operator's metrics, and the status, patched
  only when something in it changed.

Kubernetes is reached only through :class:`Api` (the real one is :class:`api.KubeApi`), so a
round is tested with a fake. Errors never escape a round: an unusable target is ``Ready=False``
and is retried with backoff, a failing metric is a Warning event and its ``error`` in status.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import kopf

from kopfscale import metrics as operator_metrics
from kopfscale.conditions import rfc3339, utcnow
from kopfscale.kube import backoff as shared_backoff
from kopfscale.kube import indexes
from kopfscale.kube.errors import ApiError
from kopfscale.kube.status import merge_patch_between
from kopfscale.scaledapp import conflicts, deployment, flapping, policy, sources
from kopfscale.scaledapp import status as st
from kopfscale.scaledapp.history import History, parse_time
from kopfscale.scaledapp.policy import Decision
from kopfscale.scaledapp.sources import MetricReading, SourceContext
from kopfscale.scaledapp.spec import ScaledAppSpec, SpecError, parse
from kopfscale.scaledapp.workload import PodCount, ScaleState, ScaleTarget, TargetError

INVALID_SPEC_RETRY = 30.0


class Api(Protocol):
    """What a round needs of Kubernetes (synchronous calls; the loop runs them in threads)."""

    def find_target(self, spec: ScaledAppSpec, name: str, namespace: str) -> ScaleTarget: ...
    def read_scale(self, target: ScaleTarget) -> ScaleState: ...
    def patch_scale(self, target: ScaleTarget, replicas: int) -> ScaleState: ...
    def count_ready_pods(self, namespace: str, selector: str) -> PodCount: ...
    def ensure_deployment(self, manifest: Mapping[str, Any], owner_uid: str) -> tuple[str, ScaleState]: ...
    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None: ...
    def retire_deployment(self, namespace: str, name: str, owner_uid: str, keep: bool) -> str | None: ...
    def post_event(self, body: kopf.Body, type_: str, reason: str, message: str) -> None: ...


def announce_deployment(api: Api, body: kopf.Body, action: str, logger: kopf.Logger | logging.Logger) -> None:
    """``DeploymentCreated`` / ``DeploymentUpdated``: once per write that really happened."""
    if action != "unchanged":
        message = f"Deployment/{body.meta['name']} {action}"
        api.post_event(body, "Normal", f"Deployment{action.capitalize()}", message)
        logger.info(message)


Reader = Callable[[str, sources.SourceSpec, SourceContext], Awaitable[MetricReading]]


@dataclass(frozen=True)
class Observation:
    target: ScaleTarget
    scale: ScaleState
    readings: list[MetricReading]
    pods: policy.Pods = policy.ALL_READY  # status.replicas, and the ready Pods when a metric needs them


class NotReady(Exception):
    """The workload cannot be read or scaled this round; ``reason`` is a condition reason."""

    def __init__(self, reason: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.reason, self.message, self.transient = reason, message, transient


@dataclass(frozen=True)
class StatusChange:
    """What one round says in the status: conditions to merge and fields to set."""

    now: datetime.datetime
    generation: int | None
    conditions: list[dict[str, Any]]
    fields: dict[str, Any]

    def apply(self, status: Mapping[str, Any]) -> dict[str, Any]:
        return st.compose(
            status, generation=self.generation, now=self.now, conditions=self.conditions, fields=self.fields
        )


class Autoscaler:
    """The state of one ScaledApp's loop, kept between rounds (and in status across restarts)."""

    def __init__(
        self,
        body: kopf.Body,
        logger: kopf.Logger | logging.Logger,
        api: Api,
        deployments: Mapping[Any, Any] | None = None,
        rivals: Callable[[conflicts.TargetKey], list[conflicts.Autoscaler]] | None = None,
        read: Reader = sources.read,
        replay: flapping.Replay | None = None,
    ) -> None:
        self.api = api
        self.deployments = deployments
        self.rivals = rivals  # every autoscaler indexed for a target (the handlers' indexes)
        self.read = read  # the metric sources (a test passes its own)
        self.replay = replay  # the simulator's replay, for the flapping suggestion
        self.logger = logger
        self._held: list[StatusChange] = []  # what rounds said while /scale writes went first
        self._writer: asyncio.Task[None] | None = None
        self._status_error: str | None = None  # the last status write's failure, logged once
        self.restore(body)

    def restore(self, body: kopf.Body) -> None:
        """Start from ``body``'s status: what survives a restart, or another replica's turn."""
        self.close()
        self.body = body
        previous = body.get("status") or {}
        self.history = History.from_status(previous.get("history"), utcnow())
        self.last_scale_time: str | None = previous.get("lastScaleTime")
        self.written: dict[str, Any] | None = None  # the status as we last wrote it
        self.replaced: dict[str, Any] | None = None  # the status that write replaced
        self.errors: dict[str, str] = {
            m["name"]: m["error"] for m in previous.get("metrics") or [] if m.get("error")
        }
        self.observed_desired: int | None = None
        # After a /scale write, until the watch shows it (:meth:`seen_own_write`): the owned
        # Deployment's generation that write made, and the count it wrote.
        self.scaled: tuple[int, int] | None = None
        self.beside: conflicts.Autoscaler | None = None  # in mode Observe: who scales the target
        self.flapping = flapping.Tracker()
        self.failed_rounds = 0
        # The parsed spec and the Deployment it asks for, per generation: both are pure
        # functions of the spec, and rebuilding the manifest (copy + hash) every round showed.
        self._parsed: tuple[Any, ScaledAppSpec, dict[str, Any] | None] | None = None

    def update_body(self, body: kopf.Body) -> None:
        """The ScaledApp as the watch shows it now. Once the watch shows our last status write,
        that write and the watched status are one object, not two copies."""
        self.body = body
        live = body.get("status") or {}
        if self.written is not None and not st.changed(live, self.written):
            self.written, self.replaced = dict(live), None

    @property
    def name(self) -> str:
        return str(self.body.meta["name"])

    @property
    def namespace(self) -> str:
        return str(self.body.meta["namespace"])

    def parsed(self, generation: Any) -> tuple[ScaledAppSpec, dict[str, Any] | None]:
        """The spec of ``generation`` and its owned Deployment manifest; SpecError if invalid."""
        if self._parsed is None or self._parsed[0] != generation:
            spec = parse(self.body.get("spec") or {})
            manifest = deployment.owned_deployment(self.body, spec) if spec.template is not None else None
            self._parsed = (generation, spec, manifest)
        return self._parsed[1], self._parsed[2]

    def backoff(self, *, transient: bool = False) -> float:
        self.failed_rounds += 1
        return shared_backoff(self.failed_rounds, transient=transient)

    async def tick(self) -> float:
        """One round; the seconds until the next one."""
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
            seen = await self.observe(spec, manifest)
        except NotReady as e:
            await self.not_ready(now, generation, e.reason, e.message)
            return self.backoff(transient=e.transient)
        decision = self.decide(spec, seen, now)
        try:
            replicas = await self.act(spec, seen, decision, now)
        except NotReady as e:
            await self.not_ready(now, generation, e.reason, e.message)
            return self.backoff(transient=e.transient)
        self.failed_rounds = 0
        await self.report(spec, seen, decision, replicas, generation, now)
        return float(spec.polling_interval)

    # --- observe -------------------------------------------------------------------------------
    async def observe(self, spec: ScaledAppSpec, manifest: dict[str, Any] | None) -> Observation:
        target, scale = await self.workload(spec, manifest)
        self.check_alone(target)
        ctx = SourceContext(
            namespace=self.namespace,
            pod_selector=scale.selector,
            now=utcnow,
            scaledapp=self.name,
            polling_interval=spec.polling_interval,  # how long a shared read may be reused
        )
        readings = list(await asyncio.gather(*(self.read(m.name, m.source, ctx) for m in spec.metrics)))
        for metric, reading in zip(spec.metrics, readings, strict=True):
            if reading.error is not None:
                operator_metrics.record_source_error(self.namespace, self.name, metric.type)
        return Observation(target, scale, readings, await self.pods(spec, target, scale, readings))

    async def pods(
        self, spec: ScaledAppSpec, target: ScaleTarget, scale: ScaleState, readings: list[MetricReading]
    ) -> policy.Pods:
        """``status.replicas``, and the Pods Running and Ready when a ``Value`` total needs them
        (:func:`policy.needs_ready_pods`): the owned Deployment's ``status.readyReplicas`` from the
        watch, else one Pod list by the ``/scale`` selector. Never a watch of Pods."""
        if not policy.needs_ready_pods(spec, scale.replicas, readings):
            return policy.Pods(replicas=scale.status_replicas)
        if scale.ready_replicas is not None:
            count = PodCount(listed=scale.status_replicas, ready=scale.ready_replicas)
        elif not scale.selector:
            return policy.Pods(scale.status_replicas, error=f"{target} reports no Pod selector")
        else:
            try:
                count = await self.call(self.api.count_ready_pods, self.namespace, scale.selector)
            except ApiError as e:
                return policy.Pods(scale.status_replicas, error=f"listing its Pods failed: {e}")
        if count.listed == 0:  # the HPA's "no pods returned by selector while calculating replica count"
            return policy.Pods(scale.status_replicas, error=f"{target} has no Pods")
        return policy.Pods(replicas=scale.status_replicas, ready=count.ready)

    async def workload(
        self, spec: ScaledAppSpec, manifest: dict[str, Any] | None
    ) -> tuple[ScaleTarget, ScaleState]:
        """The scale target and its scale now. A Deployment this ScaledApp does not own is never
        scaled (``DeploymentConflict``); an owned one deleted by someone is recreated."""
        try:
            if manifest is None:
                await self.retire_template_deployment(spec)
                target = await self.call(self.api.find_target, spec, self.name, self.namespace)
                return target, await self.call(self.api.read_scale, target)
            target = ScaleTarget("apps", "v1", "deployments", "Deployment", self.name, self.namespace)
            uid = str(self.body.meta["uid"])
            known = deployment.indexed_state(self.indexed_deployment(), manifest, uid)
            if known is not None:
                return target, self.seen_own_write(known)
            action, scale = await self.call(self.api.ensure_deployment, manifest, uid)
            announce_deployment(self.api, self.body, action, self.logger)
            return target, scale
        except TargetError as e:
            raise NotReady(e.reason, e.message) from None
        except ApiError as e:
            raise NotReady(
                e.condition_reason(), f"reading the workload failed: {e}", transient=e.transient
            ) from None

    def seen_own_write(self, known: ScaleState) -> ScaleState:
        """The watched Deployment, with the count of our last ``/scale`` write until the watch shows it.

        Under load the watch can be a round or more behind the writes: a round that took the
        watched count for the current one would scale (and announce) the same change again.
        """
        if self.scaled is None or known.generation is None:
            return known
        generation, replicas = self.scaled
        if known.generation >= generation or known.replicas == replicas:
            self.scaled = None  # the watch has caught up (or someone else has scaled since)
            return known
        return replace(known, replicas=replicas, generation=generation)  # as if the watch showed it

    async def retire_template_deployment(self, spec: ScaledAppSpec) -> None:
        """A switch from ``template`` to ``scaleTargetRef`` leaves no owned, unscaled Deployment
        behind: the one the template ran is deleted, or released when the reference names it. The
        watch of owned Deployments says whether there is one; a round asks the API server only then."""
        indexed = self.indexed_deployment()
        uid = str(self.body.meta["uid"])
        if indexed is None or uid not in (indexed.get("owners") or []):
            return
        ref = spec.scale_target_ref
        keep = ref is not None and ref.group == "apps" and ref.kind == "Deployment" and ref.name == self.name
        try:
            done = await self.call(self.api.retire_deployment, self.namespace, self.name, uid, keep)
        except ApiError as e:
            self.logger.warning(f"could not retire the Deployment the template ran: {e}")
            return
        if done is not None:
            message = f"Deployment/{self.name} {done}: spec.template was replaced by spec.scaleTargetRef" + (
                " (which names it; it is yours now)" if done == "released" else ""
            )
            self.post_event("Normal", f"Deployment{done.capitalize()}", message)
            self.logger.info(message)

    def check_alone(self, target: ScaleTarget) -> None:
        """``Conflict`` when another autoscaler drives the target (see :mod:`conflicts`); in mode
        Observe, remember who drives it, to say so beside what this one would do."""
        self.beside = None
        if self.rivals is None:
            return
        key = (target.namespace, target.group, target.kind, target.name)
        me, others = conflicts.entry("ScaledApp", self.body), self.rivals(key)
        other = conflicts.winner(me, others)
        if other is not None:
            raise NotReady("Conflict", conflicts.message(str(target), other))
        if me.observing:
            self.beside = conflicts.driver(me, others)

    def indexed_deployment(self) -> dict[str, Any] | None:
        return indexes.lookup(self.deployments, (self.namespace, self.name))

    # --- decide --------------------------------------------------------------------------------
    def decide(self, spec: ScaledAppSpec, seen: Observation, now: datetime.datetime) -> Decision:
        created = parse_time(self.body.meta.get("creationTimestamp"))
        decision = policy.decide(
            spec, seen.scale.replicas, seen.readings, self.history, now=now, created=created, pods=seen.pods
        )
        operator_metrics.record_decision(
            self.namespace, self.name, seen.scale.replicas, decision.desired, spec.mode
        )
        return decision

    # --- act -----------------------------------------------------------------------------------
    async def act(self, spec: ScaledAppSpec, seen: Observation, d: Decision, now: datetime.datetime) -> int:
        """Scale (mode Auto) when the count changes; the replica count the workload has now."""
        target = seen.target
        if spec.mode == "Auto" and d.desired != d.current:
            try:
                await self.call(self.api.patch_scale, target, d.desired, scaling=True)
            except (TargetError, ApiError) as e:
                message = e.message if isinstance(e, TargetError) else str(e)
                self.post_event("Warning", "ScaleFailed", f"scaling {target} to {d.desired}: {message}")
                self.history = d.history
                transient = isinstance(e, ApiError) and e.transient
                failed = f"scaling {target} failed: {message}"
                raise NotReady("ScaleFailed", failed, transient=transient) from None
            self.history = policy.record_scaling(d, spec, now)
            self.last_scale_time = rfc3339(now)
            if seen.scale.generation is not None:  # the owned Deployment, as the watch shows it
                self.scaled = (seen.scale.generation + 1, d.desired)
            self.announce(d, str(target), "ScaledUp", "ScaledDown")
            return d.desired
        if spec.mode == "Observe" and d.desired not in (d.current, self.observed_desired):
            self.announce(d, str(target), "WouldScaleUp", "WouldScaleDown")
        self.history = d.history
        return d.current

    # --- report --------------------------------------------------------------------------------
    async def report(
        self,
        spec: ScaledAppSpec,
        seen: Observation,
        d: Decision,
        replicas: int,
        generation: int | None,
        now: datetime.datetime,
    ) -> None:
        self.observed_desired = d.desired if d.desired != replicas else None
        self.report_errors(d)
        mode = "observing (mode: Observe, never scaling)" if spec.mode == "Observe" else "scaling"
        beside = f", beside the {self.beside.describe()} that scales it" if self.beside else ""
        ready = st.ready_condition(
            True,
            "TargetScalable",
            f"{mode} {seen.target} every {spec.polling_interval}s{beside}",
            generation,
            now,
        )
        if seen.scale.problem is not None:  # scaled, but its Pods cannot run: say why, in its words
            reason, detail = seen.scale.problem
            ready = st.ready_condition(False, reason, f"{seen.target}: {detail}", generation, now)
            self.warn_once(reason, f"{seen.target}: {detail}")
        fields = {
            "target": str(seen.target),
            "selector": seen.scale.selector,
            "replicas": replicas,
            "desiredReplicas": d.desired,
            "lastScaleTime": self.last_scale_time,
            "metrics": [st.metric_status(m) for m in d.metrics],
            "lastDecision": st.decision_status(d, now, self.current_status().get("lastDecision")),
            "history": self.history.to_status(),
        }
        conditions = [ready, *st.decision_conditions(d, spec, generation, now)]
        flapping_condition = self.report_flapping(spec, d, generation, now)
        if flapping_condition is not None:
            conditions.append(flapping_condition)
        await self.write(now, generation, conditions, fields)
        operator_metrics.record_round(self.namespace, self.name, spec, d, replicas, conditions)

    def report_flapping(
        self, spec: ScaledAppSpec, d: Decision, generation: int | None, now: datetime.datetime
    ) -> dict[str, Any] | None:
        """The ``Flapping`` condition, and one Warning event when an episode starts (:mod:`flapping`).

        The condition appears with the first episode and stays (``False``) once it has cleared."""
        cfg = flapping.settings(self.body.meta.get("annotations"))
        self.flapping, verdict = flapping.assess(self.flapping, spec, d, now, cfg, self.replay)
        if verdict.started:
            self.post_event("Warning", flapping.EVENT_REASON, verdict.message[:1000])
            self.logger.warning(f"Flapping: {verdict.message}")
        shown = any(
            c.get("type") == flapping.CONDITION for c in self.current_status().get("conditions") or []
        )
        return flapping.condition(verdict, cfg, generation, now) if verdict.flapping or shown else None

    def post_event(self, type_: str, reason: str, message: str) -> None:
        """An event about this ScaledApp; held while ``/scale`` writes go first (:class:`ScaleFirst`)."""
        body = self.body
        SCALE_FIRST.later(lambda: self.api.post_event(body, type_, reason, message), STATUS_WAIT)

    def warn_once(self, reason: str, message: str) -> None:
        """A Warning event when the Ready condition is about to change to this failure."""
        if self._ready_changed(reason, message):
            self.logger.warning(f"Not ready: {reason}: {message}")
            self.post_event("Warning", reason, message[:1000])

    def announce(self, d: Decision, target: str, up: str, down: str) -> None:
        reason = up if d.desired > d.current else down
        driver = f" driven by {d.driver}" if d.driver else ""
        message = f"{target} {d.current} -> {d.desired}{driver}: {d.explanation}"
        self.post_event("Normal", reason, message[:1000])
        self.logger.info(f"{reason}: {message}")

    def report_errors(self, d: Decision) -> None:
        """A Warning event when a source starts failing (or fails differently); Normal when it is back."""
        for m in d.metrics:
            previous = self.errors.get(m.name)
            if m.error is not None and m.error != previous:
                self.post_event("Warning", "MetricFailed", f"metric {m.name}: {m.error}"[:1000])
                self.errors[m.name] = m.error
            elif m.error is None and previous is not None:
                self.post_event("Normal", "MetricRecovered", f"metric {m.name} is readable again")
                del self.errors[m.name]

    async def not_ready(
        self, now: datetime.datetime, generation: int | None, reason: str, message: str
    ) -> None:
        # One log line and one Warning event per distinct failure, not one per retry.
        if reason == "ScaleFailed":  # act() has posted that one with the count it tried
            if self._ready_changed(reason, message):
                self.logger.warning(f"Not ready: {reason}: {message}")
        else:
            self.warn_once(reason, message)
        await self.write(now, generation, [st.ready_condition(False, reason, message, generation, now)], {})
        operator_metrics.record_not_ready(self.namespace, self.name)

    def _ready_changed(self, reason: str, message: str) -> bool:
        for c in self.current_status().get("conditions") or []:
            if c.get("type") == st.READY:
                return bool(c.get("reason") != reason or c.get("message") != message)
        return True

    def current_status(self) -> dict[str, Any]:
        """The status as it is now, with the writes still held (:meth:`write`) applied."""
        status = self.known_status()
        for held in self._held:
            status = held.apply(status)
        return status

    def known_status(self) -> dict[str, Any]:
        """The status on the API server: our last write, unless someone else has written since.

        kopf keeps ``body`` up to date from the watch. While it still shows the status our last
        write replaced, the write's event has not arrived and the write is what is there; when it
        shows neither that nor our write, someone else wrote it, and starting from it makes the
        next write put back whatever they changed (within one round).
        """
        live = dict(self.body.get("status") or {})
        if self.written is None or not st.changed(live, self.written):
            return live if self.written is None else self.written
        if self.replaced is not None and not st.changed(live, self.replaced):
            return self.written
        return live

    async def write(
        self,
        now: datetime.datetime,
        generation: int | None,
        conditions: list[dict[str, Any]],
        fields: Mapping[str, Any],
    ) -> None:
        """Write what this round says, if it says something new.

        The ScaledApp's writer task writes it (:meth:`_write_held`), folded with whatever later
        rounds say before it goes out (one PATCH). While ``/scale`` writes are under way
        (:class:`ScaleFirst`) it is held, at most :data:`STATUS_WAIT` s; the round waits for it
        only when nothing is scaling, and then at most :data:`ROUND_WAITS_FOR_STATUS` s. A round
        that waited for its status behind a thousand others started the next one late.
        """
        change = StatusChange(now, generation, conditions, dict(fields))
        previous = self.current_status()
        if not st.worth_writing(previous, change.apply(previous)):
            return
        self._held.append(change)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_held())
        if not SCALE_FIRST.busy:
            await asyncio.wait({self._writer}, timeout=ROUND_WAITS_FOR_STATUS)

    async def _write_held(self) -> None:
        await SCALE_FIRST.wait(STATUS_WAIT)
        while self._held:
            previous = status = self.known_status()
            for change in self._held:
                status = change.apply(status)
            count = len(self._held)
            if st.worth_writing(previous, status):
                try:
                    await self._patch(previous, status)
                    self._status_error = None
                except ApiError as e:  # the next round that has something to say writes it all again
                    if str(e) != self._status_error:  # one line per distinct failure, not per round
                        self.logger.warning(f"The status could not be written: {e}")
                    self._status_error = str(e)
                except Exception:
                    self.logger.exception("The status could not be written")
            del self._held[:count]  # what later rounds said meanwhile goes in the next PATCH

    async def _patch(self, previous: dict[str, Any], new: dict[str, Any]) -> None:
        try:
            await self.call(
                self.api.patch_status, self.namespace, self.name, merge_patch_between(previous, new)
            )
        except ApiError as e:
            if e.status == 404:  # deleted meanwhile; the loop is being stopped
                return
            raise
        self.written, self.replaced = new, previous

    def close(self) -> None:
        """Drop the status writes held: the ScaledApp is gone, or restored from its status."""
        self._held = []
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None

    @staticmethod
    async def call(fn: Callable[..., Any], *args: Any, scaling: bool = False) -> Any:
        """A blocking API call, off the event loop: in the shared I/O threads, or, for the write
        that scales a workload, in threads of its own, so that it never waits behind the status
        writes and reads of a thousand other rounds."""
        if scaling:
            with SCALE_FIRST.scaling():
                return await asyncio.get_running_loop().run_in_executor(_scale_threads, lambda: fn(*args))
        return await asyncio.to_thread(fn, *args)


@dataclass
class _Lane:
    """What :class:`ScaleFirst` keeps per event loop (the tests run several)."""

    idle: asyncio.Event
    deferred: collections.deque[tuple[float, Callable[[], None]]]
    drainer: asyncio.Task[None] | None = None


class ScaleFirst:
    """``/scale`` writes before status writes and events.

    When a metric steps for a thousand ScaledApps at once, each round writes the workload's
    ``/scale``, its status and an event, through one API server that takes a few hundred writes
    a second on a small control plane. While ``/scale`` writes are queued or under way, a status
    write waits (:meth:`wait`) and an event is held (:meth:`later`) — each at most
    :data:`STATUS_WAIT` s — so the writes that move workloads reach the API server first and
    what explains them follows (measured: bench/results, "reaction"). With nothing scaling,
    neither waits at all.
    """

    def __init__(self) -> None:
        self.busy = 0
        self._lane: tuple[asyncio.AbstractEventLoop, _Lane] | None = None

    def _current(self) -> _Lane:
        loop = asyncio.get_running_loop()
        if self._lane is None or self._lane[0] is not loop:
            self._lane = (loop, _Lane(asyncio.Event(), collections.deque()))
        return self._lane[1]

    @contextlib.contextmanager
    def scaling(self) -> Iterator[None]:
        self.busy += 1
        self._current().idle.clear()
        try:
            yield
        finally:
            self.busy -= 1
            if not self.busy:
                self._current().idle.set()

    async def wait(self, at_most: float) -> bool:
        """Until no ``/scale`` write is queued or under way, or ``at_most`` seconds; whether it waited."""
        if not self.busy:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._current().idle.wait()
        return True

    def later(self, call: Callable[[], None], at_most: float) -> None:
        """Call ``call`` now if nothing is scaling, else once nothing is (or after ``at_most`` s).

        Calls keep their order: one made while others are held is held behind them.
        """
        lane = self._current()
        if not self.busy and not lane.deferred:
            call()
            return
        lane.deferred.append((asyncio.get_running_loop().time() + at_most, call))
        if lane.drainer is None or lane.drainer.done():
            lane.drainer = asyncio.get_running_loop().create_task(self._drain(lane))

    async def _drain(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while lane.deferred:
            if self.busy:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(lane.deferred[0][0]):
                        await lane.idle.wait()
            now, idle = loop.time(), not self.busy
            while lane.deferred and (idle or lane.deferred[0][0] <= now):
                _, call = lane.deferred.popleft()
                try:
                    call()
                except Exception:  # one lost event must not lose the ones behind it
                    logging.getLogger(__name__).exception("A held event could not be posted")


#: The process's one :class:`ScaleFirst`, and the longest a status write or an event is held behind
#: ``/scale`` writes.
SCALE_FIRST = ScaleFirst()
STATUS_WAIT = 5.0
#: The longest a round waits for its own status write (when nothing is scaling); past it, the
#: write goes on in the ScaledApp's writer task and the round ends.
ROUND_WAITS_FOR_STATUS = 1.0

#: Threads for ``/scale`` writes only (see :meth:`Autoscaler.call`).
SCALE_THREADS = 32
_scale_threads = concurrent.futures.ThreadPoolExecutor(SCALE_THREADS, thread_name_prefix="kopfscale-scale")
