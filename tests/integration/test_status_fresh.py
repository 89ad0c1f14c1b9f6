"""Status that is never stale: after a burst, every Greeter's and ScaledApp's status tells the truth
of its children within one resync of the backlog clearing.

A burst of Greeters and ScaledApps is created at once against the operator running as a process of
its own (as in production). The backlog has cleared when every child exists and every Deployment
has all its replicas ready (kwok's simulated Pods); from then on the status must catch up within
``RESYNC`` seconds: each Greeter's ``readyReplicas`` and ``Ready`` match its Deployment, each
ScaledApp's ``replicas`` matches its Deployment's count. The test prints how many were stale when
the backlog cleared and how long they took.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.helpers import wait_for
from tests.integration.running_operator import (
    DEPLOYMENTS,
    GREETERS,
    OURS,
    SCALEDAPPS,
    Api,
    Operator,
    create_all,
    greeter,
    running,
    scaledapp,
)

pytestmark = pytest.mark.integration
GREETER_COUNT = 400
SCALEDAPP_COUNT = 200  # 2 replicas each: 800 Pods in all, within the kwok node's 1000
RESYNC = 30.0  # seconds: the bound after the backlog clears


def ready_condition(status: dict[str, Any]) -> str | None:
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status"))
    return None


def stale(api: Api, ns: str) -> list[str]:
    """Every owner whose status disagrees with its Deployment as the API server has it now."""
    deployments = {d["metadata"]["name"]: d for d in api.items(DEPLOYMENTS.format(ns=ns) + "?" + OURS)}
    found: list[str] = []
    for g in api.items(GREETERS.format(ns=ns)):
        name, status = g["metadata"]["name"], g.get("status") or {}
        d = deployments.get(name)
        ready = int(((d or {}).get("status") or {}).get("readyReplicas") or 0)
        want = "True" if d is not None and ready == g["spec"]["replicas"] else "False"
        if status.get("readyReplicas", -1) != ready or ready_condition(status) != want:
            found.append(f"Greeter/{name}: readyReplicas {status.get('readyReplicas')} Ready "
                         f"{ready_condition(status)}, Deployment ready {ready}")  # fmt: skip
    for a in api.items(SCALEDAPPS.format(ns=ns)):
        name, status = a["metadata"]["name"], a.get("status") or {}
        d = deployments.get(name)
        count = int(((d or {}).get("spec") or {}).get("replicas") or 0)
        if status.get("replicas") != count or status.get("desiredReplicas") != count:
            found.append(f"ScaledApp/{name}: replicas {status.get('replicas')}, Deployment {count}")
    return found


def backlog_cleared(api: Api, ns: str) -> bool:
    """Every child exists and every Deployment has its replicas ready: nothing left to do but tell."""
    deployments = api.items(DEPLOYMENTS.format(ns=ns) + "?" + OURS)
    if len(deployments) < GREETER_COUNT + SCALEDAPP_COUNT:
        return False
    for d in deployments:
        want = int(d["spec"].get("replicas") or 0)
        status = d.get("status") or {}
        if d["metadata"]["name"].startswith("app") and want != 2:
            return False  # a ScaledApp's round has not scaled it yet
        if int(status.get("readyReplicas") or 0) != want or int(status.get("replicas") or 0) != want:
            return False
    return True


def test_status_catches_up_with_the_children_within_one_resync_after_a_burst(
    isolated_cluster: Cluster, faults_ns: str, admin: Api, tmp_path: Path
) -> None:
    ns = faults_ns
    operator = Operator(isolated_cluster.kubeconfig, ns, isolated_cluster.env, tmp_path / "operator.log")
    bodies = [(GREETERS, greeter(f"g{i:03d}", "hello")) for i in range(GREETER_COUNT)]
    bodies += [
        (SCALEDAPPS, scaledapp(f"app{i:03d}", "registry.invalid/app:1")) for i in range(SCALEDAPP_COUNT)
    ]
    with running(operator):
        started = time.monotonic()
        create_all(admin, ns, bodies, threads=16)
        wait_for(lambda: backlog_cleared(admin, ns), timeout=420, interval=2, what="the backlog to clear")
        cleared = time.monotonic()
        at_clearing = stale(admin, ns)
        last: list[str] = []

        def fresh() -> bool:
            nonlocal last
            last = stale(admin, ns)
            return not last

        try:
            wait_for(fresh, timeout=RESYNC, interval=1, what="every status fresh")
        except AssertionError:
            raise AssertionError(
                f"{len(last)} statuses still stale {RESYNC:.0f} s after the backlog cleared, e.g. "
                f"{last[:5]}\noperator log:\n{operator.tail()}"
            ) from None
        print(
            f"burst of {GREETER_COUNT} Greeters + {SCALEDAPP_COUNT} ScaledApps: backlog cleared after "
            f"{cleared - started:.0f} s with {len(at_clearing)} stale statuses; all fresh "
            f"{time.monotonic() - cleared:.1f} s later"
        )
