"""What wakes a ScaledApp's rounds at once, and what ends them: the registry between kopf's watch
events and the scheduler (:mod:`kopfscale.scaledapp.rounds`), with rounds that only count."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

import kopf

from kopfscale.scaledapp.autoscaler import Autoscaler
from kopfscale.scaledapp.rounds import Rounds, trim
from kopfscale.scheduler import Scheduler


class Loop:
    """Stands in for an Autoscaler: counts its rounds; keeps the body it is given."""

    def __init__(self, body: kopf.Body) -> None:
        self.body = body
        self.rounds = 0
        self.restored = 0

    @property
    def namespace(self) -> str:
        return str(self.body.meta["namespace"])

    async def tick(self) -> float:
        self.rounds += 1
        return 60.0

    def backoff(self) -> float:
        return 60.0

    def update_body(self, body: kopf.Body) -> None:
        self.body = body

    def restore(self, body: kopf.Body) -> None:
        self.body = body
        self.restored += 1

    def close(self) -> None:
        self.closed = True


def scaledapp(
    name: str, uid: str, generation: int = 1, target: str | None = None, **meta: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = (
        {"scaleTargetRef": {"kind": "Deployment", "name": target}}
        if target
        else {"template": {"spec": {"containers": [{"name": "a", "image": "b"}]}}}
    )
    return {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "ScaledApp",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "generation": generation, **meta},
        "spec": spec,
        "status": {},
    }


def make(body: kopf.Body) -> Autoscaler:
    return cast(Autoscaler, Loop(body))


def loop_of(rounds: Rounds, uid: str) -> Loop:
    return cast(Loop, rounds.autoscaler(uid))


def run(scenario: Callable[[Rounds], Awaitable[None]], lister: Any = None) -> None:
    async def main() -> None:
        rounds = Rounds(Scheduler(), lister=lister)
        task = asyncio.create_task(rounds.scheduler.run())
        try:
            await scenario(rounds)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())


async def settle() -> None:
    await asyncio.sleep(0.05)


def test_a_spec_change_wakes_the_round_a_status_change_does_not() -> None:
    async def scenario(rounds: Rounds) -> None:
        rounds.seen(scaledapp("web", "u1"), make)
        await settle()
        assert loop_of(rounds, "u1").rounds == 1
        rounds.seen({**scaledapp("web", "u1"), "status": {"replicas": 2}}, make)  # our own write coming back
        await settle()
        assert loop_of(rounds, "u1").rounds == 1
        assert loop_of(rounds, "u1").body.status == {"replicas": 2}  # but the round reads the new state
        rounds.seen(scaledapp("web", "u1", generation=2), make)  # e.g. spec.paused set
        await settle()
        assert loop_of(rounds, "u1").rounds == 2

    run(scenario)


def test_a_deleted_or_terminating_scaledapp_never_runs_again() -> None:
    async def scenario(rounds: Rounds) -> None:
        rounds.seen(scaledapp("a", "u1"), make)
        rounds.seen(scaledapp("b", "u2"), make)
        await settle()
        rounds.gone(scaledapp("a", "u1"))
        rounds.gone(scaledapp("b", "u2", deletionTimestamp="2026-12-06T00:00:00Z"))
        assert rounds.autoscaler("u1") is None and rounds.autoscaler("u2") is None
        assert len(rounds.scheduler) == 0

    run(scenario)


def test_a_rival_appearing_or_leaving_wakes_every_scaledapp_of_that_workload() -> None:
    async def scenario(rounds: Rounds) -> None:
        rounds.seen(scaledapp("old", "u1", target="web"), make)
        rounds.seen(scaledapp("other", "u9", target="api"), make)
        await settle()
        rounds.seen(scaledapp("new", "u2", target="web"), make)  # a second ScaledApp on web
        await settle()
        assert loop_of(rounds, "u1").rounds == 2 and loop_of(rounds, "u9").rounds == 1
        rounds.hpa_seen("h1", ("ns", "apps", "Deployment", "web"))  # an HPA on web
        await settle()
        assert loop_of(rounds, "u1").rounds == 3 and loop_of(rounds, "u2").rounds == 2
        rounds.hpa_seen("h1", ("ns", "apps", "Deployment", "web"))  # its status moved: nothing new
        await settle()
        assert loop_of(rounds, "u1").rounds == 3
        rounds.hpa_seen("h1", None)  # deleted: the conflict clears now
        rounds.gone(scaledapp("old", "u1", target="web"))
        await settle()
        assert loop_of(rounds, "u2").rounds == 3  # one round for both wakes: it was not running
        assert loop_of(rounds, "u9").rounds == 1

    run(scenario)


def test_an_owned_deployment_changing_hands_or_deleted_wakes_its_scaledapp() -> None:
    async def scenario(rounds: Rounds) -> None:
        rounds.seen(scaledapp("web", "u1"), make)  # template mode: its own Deployment "web"
        await settle()
        rounds.deployment_seen("ns", "web", ("u1",))  # first sight: a wake is harmless
        await settle()
        base = loop_of(rounds, "u1").rounds
        rounds.deployment_seen("ns", "web", ("u1",))  # a status update of the Deployment
        await settle()
        assert loop_of(rounds, "u1").rounds == base
        rounds.deployment_seen("ns", "web", None)  # deleted by someone: recreate it now
        await settle()
        assert loop_of(rounds, "u1").rounds == base + 1

    run(scenario)


def test_resync_after_standing_by_forgets_the_deleted_and_restores_the_rest() -> None:
    listed = [scaledapp("kept", "u1", generation=3)]

    async def scenario(rounds: Rounds) -> None:
        rounds.seen(scaledapp("kept", "u1"), make)
        rounds.seen(scaledapp("deleted-meanwhile", "u2"), make)
        await settle()
        await rounds.resync()
        assert rounds.autoscaler("u2") is None
        kept = loop_of(rounds, "u1")
        assert kept.restored == 1 and kept.body.meta["generation"] == 3

    run(scenario, lister=lambda namespace: listed)


def test_the_trimmed_body_keeps_what_a_round_reads_and_drops_the_rest() -> None:
    body = scaledapp(
        "web",
        "u1",
        creationTimestamp="2026-01-01T00:00:00Z",
        managedFields=[{"manager": "kubectl"}],
        annotations={
            "kopfscale.dev/last-handled-configuration": '{"spec": "a copy"}',
            "kopfscale.dev/flapping-changes": "5",
        },
    )
    trimmed = trim(body)
    assert trimmed.meta["uid"] == "u1" and trimmed.meta["creationTimestamp"] == "2026-01-01T00:00:00Z"
    assert dict(trimmed.meta["annotations"]) == {"kopfscale.dev/flapping-changes": "5"}
    assert "managedFields" not in trimmed.meta
    assert trimmed.spec == body["spec"]
