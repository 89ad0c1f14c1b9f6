"""One autoscaling round, with the Kubernetes API injected as a fake and the metric sources faked."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from kopfscale.scaledapp import autoscaler, conflicts, deployment
from kopfscale.scaledapp.sources import MetricReading, SourceContext
from kopfscale.scaledapp.workload import ScaleState, ScaleTarget, TargetError


class Fake:
    """The autoscaler's Api, faked: it counts scale and status writes and records events."""

    def __init__(self) -> None:
        self.replicas = 1
        self.values: dict[str, float | str] = {"load": 5}
        self.target_error: TargetError | None = None
        self.scaled: list[int] = []
        self.status_patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.target = ScaleTarget("apps", "v1", "deployments", "Deployment", "web", "ns")

    async def read_metric(self, name: str, source: Any, ctx: SourceContext) -> MetricReading:
        value = self.values[name]
        return MetricReading(name, error=value) if isinstance(value, str) else MetricReading(name, value)

    def _scale(self) -> ScaleState:
        if self.target_error:
            raise self.target_error
        return ScaleState(self.replicas, self.replicas, "app=web")

    def find_target(self, spec: Any, name: str, namespace: str) -> ScaleTarget:
        self._scale()
        return self.target

    def read_scale(self, target: ScaleTarget) -> ScaleState:
        return self._scale()

    def ensure_deployment(self, manifest: Any, owner_uid: str) -> tuple[str, ScaleState]:
        return "unchanged", self._scale()

    def patch_scale(self, target: ScaleTarget, n: int) -> ScaleState:
        self.scaled.append(n)
        self.replicas = n
        return ScaleState(n, n, "app=web")

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.status_patches.append(patch)

    def post_event(self, body: kopf.Body, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def loop(self, body: kopf.Body) -> autoscaler.Autoscaler:
        return autoscaler.Autoscaler(body, logging.getLogger("test"), self, read=self.read_metric)


def body(**spec: Any) -> kopf.Body:
    raw = {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "ScaledApp",
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "00000000-0000-0000-0000-000000000001",
            "generation": 1,
            "creationTimestamp": "2020-01-01T00:00:00Z",
        },
        "spec": {
            "template": {"spec": {"containers": [{"name": "a", "image": "b"}]}},
            "minReplicas": 1,
            "maxReplicas": 10,
            "pollingInterval": 1,
            "metrics": [
                {
                    "name": "load",
                    "type": "http",
                    "http": {"url": "http://x/", "valueLocation": "$.v"},
                    "target": {"type": "AverageValue", "value": 10},
                }
            ],
            **spec,
        },
    }
    return kopf.Body(raw)


def tick(loop: autoscaler.Autoscaler) -> float:
    return asyncio.run(loop.tick())


def test_a_round_scales_reports_and_only_writes_changes() -> None:
    fake = Fake()
    loop = fake.loop(body())
    assert tick(loop) == 1.0
    assert fake.scaled == [] and len(fake.status_patches) == 1
    status = (
        fake.status_patches[0]["status"] if "status" in fake.status_patches[0] else fake.status_patches[0]
    )
    assert status["replicas"] == 1 and status["target"] == "Deployment/web"
    assert {c["type"] for c in status["conditions"]} == {
        "Ready",
        "Active",
        "ScalingLimited",
        "Fallback",
        "Paused",
    }

    tick(loop)
    assert len(fake.status_patches) == 1, "an unchanged round must not patch the status"

    fake.values["load"] = 35
    tick(loop)
    assert fake.scaled == [4]
    assert fake.events[-1][:2] == ("Normal", "ScaledUp") and "driven by load" in fake.events[-1][2]
    patch = fake.status_patches[-1]
    assert patch["replicas"] == 4 and patch["desiredReplicas"] == 4 and "lastScaleTime" in patch

    fake.values["load"] = "HTTP 503"
    tick(loop)
    tick(loop)
    warnings = [e for e in fake.events if e[0] == "Warning"]
    assert len(warnings) == 1 and "HTTP 503" in warnings[0][2]
    assert fake.scaled == [4]  # held
    fake.values["load"] = 35
    tick(loop)
    assert fake.events[-1][1] == "MetricRecovered"


def test_an_unusable_target_is_not_ready_and_backs_off() -> None:
    fake = Fake()
    fake.target_error = TargetError("TargetNotFound", "Deployment/web does not exist in namespace ns")
    loop = fake.loop(body())
    assert [tick(loop) for _ in range(4)] == [1.0, 2.0, 4.0, 8.0]
    ready = next(c for c in fake.status_patches[0]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TargetNotFound")
    assert len(fake.status_patches) == 1
    fake.target_error = None
    assert tick(loop) == 1.0
    ready = next(c for c in fake.status_patches[-1]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"


def test_a_target_driven_by_another_autoscaler_is_never_scaled() -> None:
    fake = Fake()
    fake.values["load"] = 50  # would scale 1 -> 4 (no behavior: at most max(2 x 1, 4))
    hpa = conflicts.Autoscaler("2026-01-01T00:00:00Z", "HorizontalPodAutoscaler", "web-hpa", "hpa-uid")
    rivals: list[conflicts.Autoscaler] = [hpa]
    seen: list[conflicts.TargetKey] = []

    def lookup(key: conflicts.TargetKey) -> list[conflicts.Autoscaler]:
        seen.append(key)
        return list(rivals)

    loop = autoscaler.Autoscaler(
        body(), logging.getLogger("test"), fake, rivals=lookup, read=fake.read_metric
    )
    tick(loop)
    tick(loop)
    assert fake.scaled == [] and seen[0] == ("ns", "apps", "Deployment", "web")
    ready = next(c for c in fake.status_patches[-1]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Conflict")
    assert "HorizontalPodAutoscaler web-hpa" in ready["message"]
    assert [e[:2] for e in fake.events] == [("Warning", "Conflict")], "one event per distinct failure"
    rivals.clear()  # the HPA is deleted: the conflict clears by itself
    tick(loop)
    assert fake.scaled == [4]


def test_observe_mode_never_scales_but_tells() -> None:
    fake = Fake()
    fake.values["load"] = 50
    loop = fake.loop(body(mode="Observe"))
    tick(loop)
    tick(loop)
    assert fake.scaled == []
    assert [e[1] for e in fake.events] == ["WouldScaleUp"]
    assert fake.status_patches[0]["desiredReplicas"] == 4 and fake.status_patches[0]["replicas"] == 1


def _owned(template_hash: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {
            "ownerReferences": [{"uid": "sa-uid"}],
            "annotations": {deployment.TEMPLATE_HASH_ANNOTATION: template_hash},
        },
        "spec": {"replicas": 3, "selector": {"matchLabels": {deployment.SCALEDAPP_LABEL: "web"}}},
        "status": {"replicas": 2},
    }
    body["metadata"].update(changes)
    return body


def test_a_settled_deployment_is_read_from_the_watch_and_anything_else_from_the_apiserver() -> None:
    manifest = deployment.deployment_manifest("web", "ns", {"spec": {"containers": []}}, 1)
    wanted = manifest["metadata"]["annotations"][deployment.TEMPLATE_HASH_ANNOTATION]
    state = deployment.indexed_state(deployment.trim_deployment(_owned(wanted)), manifest, "sa-uid")
    assert state == ScaleState(replicas=3, status_replicas=2, selector=f"{deployment.SCALEDAPP_LABEL}=web")
    # Unknown, out of date, foreign or going away: the apiserver decides (Api.ensure_deployment).
    assert deployment.indexed_state(None, manifest, "sa-uid") is None
    for body in (
        _owned("stale-hash"),
        _owned(wanted, ownerReferences=[{"uid": "someone-else"}]),
        _owned(wanted, deletionTimestamp="2026-11-26T00:00:00Z"),
    ):
        assert deployment.indexed_state(deployment.trim_deployment(body), manifest, "sa-uid") is None


class _Stopper:
    """Stands in for kopf's DaemonStopped: falsy until set, and awaitable."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        await self.event.wait()


class _Rounds:
    def __init__(self) -> None:
        self.count = 0

    async def tick(self) -> float:
        self.count += 1
        return 30.0

    def backoff(self) -> float:
        return 30.0


def test_rounds_wait_for_the_interval_but_a_spec_change_or_a_stop_ends_the_wait_at_once() -> None:
    async def scenario() -> None:
        rounds, stopper, wake = _Rounds(), _Stopper(), asyncio.Event()
        task = asyncio.create_task(autoscaler.run(rounds, stopper, wake, logging.getLogger("t")))  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        assert rounds.count == 1  # the next round is 30 s away
        wake.set()  # what wake_autoscaler does on a spec change
        await asyncio.sleep(0.2)
        assert rounds.count == 2
        stopper.event.set()
        await asyncio.wait_for(task, timeout=1.0)
        assert rounds.count == 2

    asyncio.run(scenario())
