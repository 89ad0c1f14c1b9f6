"""One autoscaling round, with the Kubernetes API injected as a fake and the metric sources faked."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import kopf

from kopfscale.kube.errors import ApiError
from kopfscale.scaledapp import autoscaler, conflicts, deployment
from kopfscale.scaledapp.sources import MetricReading, SourceContext
from kopfscale.scaledapp.spec import parse
from kopfscale.scaledapp.workload import PodCount, ScaleState, ScaleTarget, TargetError


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
        self.pods: PodCount | ApiError = PodCount(listed=1, ready=1)
        self.pod_lists: list[tuple[str, str]] = []

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

    def count_ready_pods(self, namespace: str, selector: str) -> PodCount:
        self.pod_lists.append((namespace, selector))
        if isinstance(self.pods, ApiError):
            raise self.pods
        return self.pods

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
            "generation": 4,
        },
        "spec": {"replicas": 3, "selector": {"matchLabels": {deployment.SCALEDAPP_LABEL: "web"}}},
        "status": {"replicas": 2, "readyReplicas": 1},
    }
    body["metadata"].update(changes)
    return body


def test_a_settled_deployment_is_read_from_the_watch_and_anything_else_from_the_apiserver() -> None:
    manifest = deployment.deployment_manifest("web", "ns", {"spec": {"containers": []}}, 1)
    wanted = manifest["metadata"]["annotations"][deployment.TEMPLATE_HASH_ANNOTATION]
    state = deployment.indexed_state(deployment.trim_deployment(_owned(wanted)), manifest, "sa-uid")
    assert state == ScaleState(
        replicas=3,
        status_replicas=2,
        selector=f"{deployment.SCALEDAPP_LABEL}=web",
        ready_replicas=1,
        generation=4,
    )
    # Unknown, out of date, foreign or going away: the apiserver decides (Api.ensure_deployment).
    assert deployment.indexed_state(None, manifest, "sa-uid") is None
    for body in (
        _owned("stale-hash"),
        _owned(wanted, ownerReferences=[{"uid": "someone-else"}]),
        _owned(wanted, deletionTimestamp="2026-11-26T00:00:00Z"),
    ):
        assert deployment.indexed_state(deployment.trim_deployment(body), manifest, "sa-uid") is None


def test_a_watch_behind_the_last_scale_write_never_makes_a_round_scale_and_announce_it_twice() -> None:
    fake = Fake()
    obj = body(pollingInterval=5)
    manifest = deployment.owned_deployment(obj, parse(obj["spec"]))
    uid = obj["metadata"]["uid"]

    def watched(replicas: int, generation: int) -> dict[Any, Any]:
        owned = {
            "metadata": {
                "ownerReferences": [{"uid": uid}],
                "annotations": manifest["metadata"]["annotations"],
                "generation": generation,
            },
            "spec": {"replicas": replicas, "selector": {"matchLabels": {deployment.SCALEDAPP_LABEL: "web"}}},
            "status": {"replicas": replicas, "readyReplicas": replicas},
        }
        return {("ns", "web"): [json.dumps(deployment.trim_deployment(owned))]}

    loop = autoscaler.Autoscaler(
        obj, logging.getLogger("test"), fake, deployments=watched(1, 4), read=fake.read_metric
    )
    fake.values["load"] = 30  # AverageValue 10: 3 replicas
    tick(loop)
    tick(loop)  # the watch still shows generation 4 with 1 replica: the write is not repeated
    assert fake.scaled == [3]
    assert [e[1] for e in fake.events] == ["ScaledUp"]
    loop.deployments = watched(3, 5)  # the watch shows the write
    tick(loop)
    loop.deployments = watched(1, 6)  # someone else scaled it down since
    tick(loop)
    assert fake.scaled == [3, 3]
    assert [e[1] for e in fake.events] == ["ScaledUp", "ScaledUp"]


# --- the ready Pods a Value total's ratio multiplies (#13.3) -------------------------------------
VALUE_METRIC = {
    "name": "load",
    "type": "http",
    "http": {"url": "http://x/", "valueLocation": "$.v"},
    "target": {"type": "Value", "value": 10},
}
REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}


def last_metric_status(fake: Fake) -> dict[str, Any]:
    status = next(p for p in reversed(fake.status_patches) if "metrics" in p)
    metric: dict[str, Any] = status["metrics"][0]
    return metric


def test_a_scale_target_ref_counts_its_ready_pods_by_its_selector_only_when_a_value_total_needs_them() -> (
    None
):
    fake = Fake()
    fake.replicas, fake.pods = 3, PodCount(listed=3, ready=1)
    loop = fake.loop(body(template=None, scaleTargetRef=REF, metrics=[VALUE_METRIC]))
    fake.values["load"] = 10.5  # ratio 1.05: within the tolerance, nothing to count
    tick(loop)
    assert fake.pod_lists == [] and fake.scaled == []
    fake.values["load"] = 50  # ratio 5: 5 x 1 ready Pod (spec.replicas would have given 15)
    tick(loop)
    assert fake.pod_lists == [("ns", "app=web")]
    assert fake.scaled == [5]
    assert last_metric_status(fake)["pods"] == 1


def test_an_owned_deployment_gives_its_ready_pods_from_the_watch_without_a_request() -> None:
    fake = Fake()
    obj = body(metrics=[VALUE_METRIC])
    manifest = deployment.owned_deployment(obj, parse(obj["spec"]))
    owned = {
        "metadata": {
            "ownerReferences": [{"uid": obj["metadata"]["uid"]}],
            "annotations": manifest["metadata"]["annotations"],
        },
        "spec": {"replicas": 3, "selector": {"matchLabels": {deployment.SCALEDAPP_LABEL: "web"}}},
        "status": {"replicas": 3, "readyReplicas": 2},
    }
    index = {("ns", "web"): [json.dumps(deployment.trim_deployment(owned))]}
    loop = autoscaler.Autoscaler(
        obj, logging.getLogger("test"), fake, deployments=index, read=fake.read_metric
    )
    fake.values["load"] = 25  # ratio 2.5 x 2 ready Pods = 5
    tick(loop)
    assert fake.pod_lists == [] and fake.scaled == [5]


def test_ready_pods_that_cannot_be_counted_fail_the_metric_and_hold_the_count() -> None:
    fake = Fake()
    fake.replicas, fake.values["load"] = 3, 50
    fake.pods = ApiError(403, "Forbidden", 'pods is forbidden: cannot list resource "pods"')
    loop = fake.loop(body(template=None, scaleTargetRef=REF, metrics=[VALUE_METRIC]))
    tick(loop)
    assert fake.scaled == []
    assert last_metric_status(fake)["error"] == (
        "50 read, but the ready Pods could not be counted: listing its Pods failed: "
        'HTTP 403: pods is forbidden: cannot list resource "pods"'
    )
    fake.pods = PodCount(listed=0, ready=0)  # the HPA's "no pods returned by selector"
    tick(loop)
    assert fake.scaled == []
    assert last_metric_status(fake)["error"].endswith("could not be counted: Deployment/web has no Pods")


async def scale_for(lane: autoscaler.ScaleFirst, seconds: float, order: list[str]) -> None:
    """A ``/scale`` write under way for ``seconds``; says "scaled" when done."""
    with lane.scaling():
        await asyncio.sleep(seconds)
        order.append("scaled")


def test_a_status_write_waits_for_the_scale_writes_under_way_but_not_longer_than_its_bound() -> None:
    lane = autoscaler.ScaleFirst()
    order: list[str] = []

    async def status(bound: float) -> None:
        await lane.wait(bound)
        order.append("status")

    async def main() -> None:
        await status(5.0)  # nothing scaling: at once
        await asyncio.gather(scale_for(lane, 0.2, order), status(5.0))  # after the scale write
        await asyncio.gather(scale_for(lane, 1.0, order), status(0.1))  # not longer than its bound

    asyncio.run(main())
    assert order == ["status", "scaled", "status", "status", "scaled"]
    asyncio.run(main())  # another event loop (the lane keeps one event per loop)


def test_events_are_held_behind_scale_writes_in_their_order_and_not_longer_than_their_bound() -> None:
    lane = autoscaler.ScaleFirst()
    order: list[str] = []

    async def main() -> None:
        lane.later(lambda: order.append("idle"), 5.0)  # nothing scaling: at once
        assert order == ["idle"]
        writing = asyncio.create_task(scale_for(lane, 0.2, order))
        await asyncio.sleep(0)
        lane.later(lambda: order.append("first"), 5.0)
        lane.later(lambda: order.append("second"), 5.0)
        assert order == ["idle"]  # held while the /scale write is under way
        await writing
        await asyncio.sleep(0.05)
        assert order == ["idle", "scaled", "first", "second"]
        slow = asyncio.create_task(scale_for(lane, 1.0, order))
        await asyncio.sleep(0)
        lane.later(lambda: order.append("bounded"), 0.1)
        await asyncio.sleep(0.3)
        assert order[-1] == "bounded"  # released at its bound, the scale write still under way
        await slow

    asyncio.run(main())
    assert order == ["idle", "scaled", "first", "second", "bounded", "scaled"]


def test_a_round_ends_on_time_while_others_scale_and_its_status_and_event_follow_their_writes() -> None:
    fake = Fake()
    loop = fake.loop(body())
    tick(loop)  # the first status, nothing scaling
    assert len(fake.status_patches) == 1
    fake.values["load"] = 35

    async def main() -> None:
        with autoscaler.SCALE_FIRST.scaling():  # another ScaledApp's /scale write under way
            async with asyncio.timeout(1.0):  # the round does not wait for its status write
                await loop.tick()
            assert fake.scaled == [4]  # its own /scale write went out at once
            assert len(fake.status_patches) == 1 and not any(e[1] == "ScaledUp" for e in fake.events)
            assert loop.current_status()["replicas"] == 4  # what the next round starts from
            fake.values["load"] = "HTTP 503"
            async with asyncio.timeout(1.0):
                await loop.tick()  # a second round while still held: folded into one write
            await asyncio.sleep(0.05)
            assert len(fake.status_patches) == 1
        await asyncio.sleep(0.05)  # the other write is done: what was held follows it
        assert len(fake.status_patches) == 2
        patch = fake.status_patches[-1]
        assert patch["replicas"] == 4 and patch["metrics"][0]["error"] == "HTTP 503"
        assert [e[1] for e in fake.events][-2:] == ["ScaledUp", "MetricFailed"]

    asyncio.run(main())


def test_a_failed_status_write_is_logged_once_and_written_again_by_the_next_round(caplog: Any) -> None:
    fake = Fake()
    loop = fake.loop(body())
    failing = ApiError(None, "Timeout", "the request timed out")
    sent = fake.patch_status

    def refuse(namespace: str, name: str, patch: dict[str, Any]) -> None:
        raise failing

    fake.patch_status = refuse  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING):
        tick(loop)
        tick(loop)  # the same failure again: no second line
    assert [r.getMessage() for r in caplog.records] == [f"The status could not be written: {failing}"]
    fake.patch_status = sent  # type: ignore[method-assign]
    tick(loop)
    assert len(fake.status_patches) == 1 and fake.status_patches[0]["replicas"] == 1
