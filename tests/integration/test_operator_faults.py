"""The running operator under faults: the API server killed and restarted, frozen, or cut off by a
blackholing proxy for 20 s each, and the operator itself SIGKILLed during a burst.

What a user would check afterwards, and what is asserted: every Greeter's Deployment and Service
exist once, are controlled by it, and carry its *current* message (no update lost — whether it was
made before, during or after the fault); every ScaledApp's Deployment exists and is scaled; nothing
is orphaned; the operator recovered without a restart within 30 s of the fault ending; and its
liveness endpoint said unhealthy while it could not reach the API server, healthy again after.

Runs on a control plane of its own (``isolated_cluster``): these tests break it on purpose. The
numbers (recovery time, lost/duplicated/orphaned counts) are printed for the closing notes.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kopfscale_devcluster import LocalCluster
from tests.conftest import Cluster
from tests.helpers import wait_for
from tests.integration.running_operator import (
    DEPLOYMENTS,
    GREETERS,
    OURS,
    SCALEDAPPS,
    SERVICES,
    Api,
    Operator,
    create_all,
    greeter,
    running,
    scaledapp,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

FAULT_SECONDS = 20.0
RECOVERY_BOUND = 30.0  # seconds from the end of a fault until everything is converged again

FAULT_SECONDS = 20.0
RECOVERY_BOUND = 30.0  # seconds from the end of a fault until everything is converged again


# --- convergence: what kubectl would show, every object checked -------------------------------------------
@dataclass
class Census:
    """The namespace as a user sees it, compared with what its Greeters and ScaledApps ask for."""

    missing: list[str] = field(default_factory=list)  # a child that should exist and does not
    stale: list[str] = field(default_factory=list)  # a child that does not carry its owner's current spec
    duplicates: list[str] = field(default_factory=list)  # more than one child of a kind for one owner
    orphans: list[str] = field(default_factory=list)  # a child of ours whose owner is gone
    unscaled: list[str] = field(default_factory=list)  # a ScaledApp's Deployment not at its desired count

    @property
    def converged(self) -> bool:
        return not (self.missing or self.stale or self.duplicates or self.orphans or self.unscaled)

    def summary(self) -> str:
        parts = {k: v for k, v in vars(self).items() if v}
        return ", ".join(f"{k} {len(v)} (e.g. {v[:3]})" for k, v in parts.items()) or "converged"


def controller_uid(obj: dict[str, Any]) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref["uid"])
    return None


def message_of(deployment: dict[str, Any]) -> str | None:
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        for env in container.get("env") or []:
            if env["name"] == "GREETER_MESSAGE":
                return str(env["value"])
    return None


def census(api: Api, ns: str) -> Census:
    found = Census()
    greeters = api.items(GREETERS.format(ns=ns))
    apps = api.items(SCALEDAPPS.format(ns=ns))
    deployments = api.items(DEPLOYMENTS.format(ns=ns) + "?" + OURS)
    services = api.items(SERVICES.format(ns=ns) + "?" + OURS)
    owners = {o["metadata"]["uid"]: o for o in [*greeters, *apps]}

    def children(of: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        by_owner: dict[str, list[dict[str, Any]]] = {}
        for child in of:
            uid = controller_uid(child)
            if uid is None or uid not in owners:
                found.orphans.append(f"{child['kind']}/{child['metadata']['name']}")
            else:
                by_owner.setdefault(uid, []).append(child)
        return by_owner

    deployments_of, services_of = children(deployments), children(services)
    for g in greeters:
        name, uid = g["metadata"]["name"], g["metadata"]["uid"]
        for kind, of in (("Deployment", deployments_of), ("Service", services_of)):
            mine = of.get(uid, [])
            if not mine:
                found.missing.append(f"{kind}/{name}")
            elif len(mine) > 1:
                found.duplicates.append(f"{kind}/{name}")
        for d in deployments_of.get(uid, []):
            if message_of(d) != g["spec"]["message"]:
                found.stale.append(f"Deployment/{name}: {message_of(d)!r} != {g['spec']['message']!r}")
    for a in apps:
        name, uid = a["metadata"]["name"], a["metadata"]["uid"]
        mine = deployments_of.get(uid, [])
        if not mine:
            found.missing.append(f"Deployment/{name}")
            continue
        if len(mine) > 1:
            found.duplicates.append(f"Deployment/{name}")
        image = a["spec"]["template"]["spec"]["containers"][0]["image"]
        live = mine[0]["spec"]
        if live["template"]["spec"]["containers"][0]["image"] != image:
            found.stale.append(f"Deployment/{name}: not image {image}")
        if live.get("replicas") != 2:
            found.unscaled.append(f"Deployment/{name}: {live.get('replicas')}")
    return found


def wait_converged(api: Api, ns: str, timeout: float, operator: Operator) -> Census:
    """Wait until the namespace is converged; fail with what is still wrong."""
    last = Census()

    def check() -> bool:
        nonlocal last
        last = census(api, ns)
        return last.converged

    try:
        wait_for(check, timeout=timeout, interval=0.5, what="convergence")
    except AssertionError:
        raise AssertionError(
            f"not converged after {timeout:.0f} s: {last.summary()}\noperator log:\n{operator.tail()}"
        ) from None
    return last


# --- concurrent updates: a message change every second, recorded ----------------------------------------
class Updater:
    """Changes one Greeter's message every ``interval`` s, round-robin, until stopped. Each change is
    a merge patch straight to the API server; the census compares children with the Greeters'
    spec as it finally is, so an update whose request timed out but landed is checked too."""

    def __init__(self, api: Api, ns: str, names: list[str], interval: float = 1.0) -> None:
        self.api, self.ns, self.names, self.interval = api, ns, names, interval
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            name = self.names[n % len(self.names)]
            n += 1
            with contextlib.suppress(Exception):  # the API server may be down: that is the fault
                path = GREETERS.format(ns=self.ns) + f"/{name}"
                self.api.call("PATCH", path, {"spec": {"message": f"update {n}"}}, merge=True)
                self.sent += 1

    def __enter__(self) -> Updater:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


# --- the API server faults --------------------------------------------------------------------------------
@dataclass
class Fault:
    """One way the API server becomes unreachable for the operator: ``begin`` and ``end``, and the
    kubeconfig the operator must use to be affected by it."""

    name: str
    kubeconfig: Path
    begin: Callable[[], None]
    end: Callable[[], None]


def faults(local: LocalCluster, name: str) -> Fault:
    if name == "kill-restart":
        return Fault(
            name,
            local.kubeconfig,
            lambda: local.stop_component("kube-apiserver", kill=True),
            lambda: local.start_component("kube-apiserver"),
        )
    if name == "freeze":
        return Fault(
            name,
            local.kubeconfig,
            lambda: local.freeze("kube-apiserver"),
            lambda: local.thaw("kube-apiserver"),
        )
    proxy = local.proxy()
    assert proxy.kubeconfig is not None
    return Fault(name, proxy.kubeconfig, proxy.blackhole, proxy.unblock)


@pytest.mark.parametrize("fault_name", ["kill-restart", "freeze", "blackhole"])
def test_the_running_operator_recovers_from_an_api_server_fault_within_30_s_and_loses_no_update(
    isolated_cluster: Cluster, admin: Api, faults_ns: str, fault_name: str, tmp_path: Path
) -> None:
    assert isolated_cluster.local is not None
    local, ns = isolated_cluster.local, faults_ns
    fault = faults(local, fault_name)
    operator = Operator(fault.kubeconfig, ns, isolated_cluster.env, tmp_path / "operator.log")
    names = [f"g{i:02d}" for i in range(30)]
    bodies = [(GREETERS, greeter(n, "hello")) for n in names]
    bodies += [(SCALEDAPPS, scaledapp(f"app{i}", "registry.invalid/app:1")) for i in range(5)]

    with running(operator):
        create_all(admin, ns, bodies)
        wait_converged(admin, ns, timeout=120, operator=operator)

        health: list[tuple[float, bool]] = []
        with Updater(admin, ns, names) as updater:
            time.sleep(3)
            began = time.monotonic()
            fault.begin()
            try:
                while time.monotonic() - began < FAULT_SECONDS:
                    health.append((time.monotonic() - began, operator.healthy()))
                    time.sleep(1)
            finally:
                fault.end()
            ended = time.monotonic()
            status, answer = admin.call("POST", GREETERS.format(ns=ns), greeter("after", "after the fault"))
            assert status == 201, answer
            time.sleep(10)  # updates go on after the fault: they must not be lost either
        final = wait_converged(admin, ns, timeout=RECOVERY_BOUND + 60, operator=operator)
        recovered = time.monotonic() - ended
        wait_for(operator.healthy, timeout=30, what="healthy again")
        healthy_again = time.monotonic() - ended

        unhealthy_during = [round(t) for t, ok in health if not ok]
        print(
            f"{fault_name}: converged {recovered:.1f} s after the fault ended (bound {RECOVERY_BOUND:.0f}); "
            f"{updater.sent} updates sent; lost {len(final.stale)}, duplicated {len(final.duplicates)}, "
            f"orphaned {len(final.orphans)}, missing {len(final.missing)}; liveness unhealthy at "
            f"{unhealthy_during} s of the fault, healthy again {healthy_again:.1f} s after it; "
            f"operator starts {operator.starts}"
        )
        assert operator.alive() and operator.starts == 1, "the operator recovered without a restart"
        assert recovered <= RECOVERY_BOUND, (
            f"converged only {recovered:.1f} s after the fault:\n{operator.tail()}"
        )
        assert unhealthy_during, f"liveness said healthy all through the fault: {health}"


# --- the operator SIGKILLed during a burst ---------------------------------------------------------------
BURST_GREETERS = 200
BURST_SCALEDAPPS = 50
KILLS = 3


def test_operator_sigkilled_during_a_burst_loses_nothing_and_duplicates_nothing(
    isolated_cluster: Cluster, admin: Api, faults_ns: str, tmp_path: Path
) -> None:
    ns = faults_ns
    operator = Operator(isolated_cluster.kubeconfig, ns, isolated_cluster.env, tmp_path / "operator.log")
    rng = random.Random(12)  # random points, the same in every run
    greeters = [f"b{i:03d}" for i in range(BURST_GREETERS)]
    apps = [f"app{i:02d}" for i in range(BURST_SCALEDAPPS)]
    bodies = [(GREETERS, greeter(n, "v0")) for n in greeters] + [
        (SCALEDAPPS, scaledapp(n, "registry.invalid/app:0")) for n in apps
    ]
    rng.shuffle(bodies)
    kills: list[float] = []
    started = time.monotonic()

    def killer() -> None:
        for _ in range(KILLS):
            time.sleep(rng.uniform(4, 12))
            operator.kill()
            kills.append(time.monotonic() - started)
            time.sleep(rng.uniform(0.5, 3))
            operator.start()

    def update_apps() -> None:  # concurrent template changes: each must reach its Deployment
        for n, name in enumerate(rng.sample(apps, 25)):
            time.sleep(0.8)
            container = {"name": "app", "image": f"registry.invalid/app:{n + 1}"}
            image = {"spec": {"template": {"spec": {"containers": [container]}}}}
            with contextlib.suppress(Exception):
                admin.call("PATCH", SCALEDAPPS.format(ns=ns) + f"/{name}", image, merge=True)

    try:
        operator.start()
        wait_for(
            operator.healthy, timeout=60, what=f"the operator's liveness endpoint; log:\n{operator.tail()}"
        )
        with ThreadPoolExecutor(3) as side, Updater(admin, ns, greeters, interval=0.3) as updater:
            chaos = side.submit(killer)
            app_updates = side.submit(update_apps)
            create_all(admin, ns, bodies)
            chaos.result(timeout=120)
            app_updates.result(timeout=120)
        burst_ended = time.monotonic()
        final = wait_converged(admin, ns, timeout=300, operator=operator)
        print(
            f"burst of {BURST_GREETERS} Greeters + {BURST_SCALEDAPPS} ScaledApps, {updater.sent} message "
            f"updates, SIGKILL at {[round(k, 1) for k in kills]} s: converged "
            f"{time.monotonic() - burst_ended:.1f} s after the burst; lost {len(final.stale)}, duplicated "
            f"{len(final.duplicates)}, orphaned {len(final.orphans)}, missing {len(final.missing)}"
        )
        assert len(kills) == KILLS
        assert operator.alive()
    finally:
        operator.stop()


def test_census_sees_what_is_wrong() -> None:
    """The census is the fault tests' only judge: it must see a stale, a missing, a duplicated and
    an orphaned child, or the tests above could pass with nothing converged."""
    greeter_uid, app_uid = "g-uid", "a-uid"

    def child(kind: str, name: str, owner: str, message: str = "m", replicas: int = 2) -> dict[str, Any]:
        refs = [{"uid": owner, "controller": True}]
        container = {"name": "app", "image": "i", "env": [{"name": "GREETER_MESSAGE", "value": message}]}
        return {
            "kind": kind,
            "metadata": {"name": name, "ownerReferences": refs},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [container]}}},
        }

    g = {"metadata": {"name": "g", "uid": greeter_uid}, "spec": {"message": "new"}}
    a = {
        "metadata": {"name": "a", "uid": app_uid},
        "spec": {"template": {"spec": {"containers": [{"image": "i"}]}}},
    }
    listing: dict[str, list[dict[str, Any]]] = {
        GREETERS: [g],
        SCALEDAPPS: [a],
        DEPLOYMENTS: [
            child("Deployment", "g", greeter_uid, "old"),
            child("Deployment", "x", "gone"),
            child("Deployment", "a", app_uid, replicas=1),
            child("Deployment", "a2", app_uid),
        ],
        SERVICES: [],
    }

    class Fake(Api):
        def __init__(self) -> None:
            pass

        def items(self, path: str) -> list[dict[str, Any]]:
            template = next(t for t in listing if urllib.parse.unquote(path).startswith(t.format(ns="ns")))
            return listing[template]

    found = census(Fake(), "ns")
    assert found.stale == ["Deployment/g: 'old' != 'new'"]
    assert found.missing == ["Service/g"]
    assert found.orphans == ["Deployment/x"]
    assert found.duplicates == ["Deployment/a"]
    assert found.unscaled == ["Deployment/a: 1"]
    assert not found.converged
