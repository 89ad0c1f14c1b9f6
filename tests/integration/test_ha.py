"""High availability the way the chart runs it: two ``kopfscale run`` processes with identical
arguments (only their liveness ports differ) against one cluster. Exactly one acts — its kopf
handlers and its autoscaling rounds alike; SIGKILL it, and the other acts within 15 s."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kopfscale_devcluster.cluster import free_port
from tests.conftest import Cluster
from tests.helpers import wait_for

pytestmark = pytest.mark.integration
PEERING_CRDS = Path(__file__).resolve().parents[2] / "deploy" / "crds" / "kopf-peering.yaml"
TAKEOVER_BOUND = 15.0
ACTED = "Handler 'greeter_changed' is invoked"  # a replica's log line when it handles a Greeter
PAUSED = "Pausing operations in favour of"  # kopf's line when a peer with a higher priority is seen
RESUMED = "Resuming operations after the pause"  # and when none outranks it (any more)


def greeter(name: str) -> str:
    body = {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "Greeter",
        "metadata": {"name": name},
        "spec": {"message": "hi"},
    }
    return json.dumps(body)


def scaledapp(desired: int) -> str:
    """A ScaledApp whose cron window asks for ``desired`` replicas all year, every 2 s."""
    window = {"timezone": "UTC", "start": "* * * * *", "end": "0 0 1 1 *", "desiredReplicas": desired}
    body = {
        "apiVersion": "kopfscale.dev/v1",
        "kind": "ScaledApp",
        "metadata": {"name": "auto"},
        "spec": {
            "template": {"spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}},
            "minReplicas": 1,
            "maxReplicas": 5,
            "pollingInterval": 2,
            "metrics": [{"name": "always", "type": "cron", "cron": window}],
        },
    }
    return json.dumps(body)


def replicas(cluster: Cluster, namespace: str, name: str) -> int:
    out = cluster.kubectl("get", "deployment", name, "-n", namespace, "-o", "jsonpath={.spec.replicas}")
    return int(out.stdout or 0)


SCALED = "ScaledUp: Deployment/auto"  # a replica's log line when its round scales the ScaledApp


def has_deployment(cluster: Cluster, namespace: str, name: str) -> bool:
    return cluster.kubectl("get", "deployment", name, "-n", namespace, check=False).returncode == 0


@pytest.fixture()
def peering(cluster: Cluster, namespace: str) -> Iterator[str]:
    cluster.kubectl("apply", "--server-side", "-f", str(PEERING_CRDS))
    cluster.kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev", "--timeout=60s")
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "ha"}}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(peering))
    yield "ha"


def test_exactly_one_replica_acts_and_a_standby_takes_over_a_killed_one(
    cluster: Cluster, namespace: str, peering: str, tmp_path: Path
) -> None:
    processes: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        for n in (1, 2):
            log = tmp_path / f"replica-{n}.log"
            liveness = f"http://127.0.0.1:{free_port()}/healthz"
            args = [sys.executable, "-m", "kopfscale.cli", "run", "--namespace", namespace,
                    "--peering", peering, "--verbose", "--liveness", liveness]  # fmt: skip
            # POD_ID: kopf's identity in the peering object, as the chart sets it (the Pod's name).
            env = {**cluster.env, "PYTHONUNBUFFERED": "1", "POD_ID": f"replica-{n}"}
            with log.open("wb") as out:
                processes[n] = (
                    subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT),
                    log,
                )

        def priorities() -> dict[str, int]:
            body = json.loads(
                cluster.kubectl("get", "kopfpeering", peering, "-n", namespace, "-o", "json").stdout
            )
            return {peer: int(info["priority"]) for peer, info in (body.get("status") or {}).items()}

        wait_for(lambda: len(priorities()) == 2, timeout=60, what="both replicas in the peering object")
        assert len(set(priorities().values())) == 2, (
            f"identical arguments, distinct priorities: {priorities()}"
        )

        # The highest priority acts. kopf starts every replica paused and resumes it only when no
        # live peer outranks it: wait until the logs show exactly that (the active one resumed last,
        # the standby never resumed or paused after it did).
        ranked = sorted(priorities().items(), key=lambda item: item[1])
        standby, active = (int(peer.rsplit("-", 1)[1]) for peer, _ in ranked)

        def acting(n: int) -> bool:
            text = processes[n][1].read_text()
            return text.rfind(RESUMED) > text.rfind(PAUSED)

        wait_for(lambda: acting(active) and not acting(standby), timeout=60, what="one replica standing by")

        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=greeter("first"))
        wait_for(
            lambda: has_deployment(cluster, namespace, "first"),
            timeout=60,
            what="the first Greeter's Deployment",
        )
        handled = {n: ACTED in log.read_text() for n, (_, log) in processes.items()}
        assert handled == {active: True, standby: False}, f"exactly one replica acts: {handled}"
        assert acting(active) and not acting(standby)

        # The autoscaling rounds (one scheduler, not kopf handlers) follow the same rule.
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=scaledapp(2))
        wait_for(lambda: replicas(cluster, namespace, "auto") == 2, timeout=60, what="auto at 2 replicas")
        time.sleep(3)  # a standby running rounds would log its own scaling by now
        scaled = {n: SCALED in log.read_text() for n, (_, log) in processes.items()}
        assert scaled == {active: True, standby: False}, f"exactly one replica scales: {scaled}"

        seen = len(processes[standby][1].read_text())
        processes[active][0].send_signal(signal.SIGKILL)
        processes[active][0].wait(timeout=10)
        killed = time.monotonic()
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=greeter("second"))
        wait_for(
            lambda: has_deployment(cluster, namespace, "second"),
            timeout=60,
            interval=0.2,
            what="the takeover",
        )
        takeover = time.monotonic() - killed
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=scaledapp(3))
        wait_for(
            lambda: replicas(cluster, namespace, "auto") == 3,
            timeout=TAKEOVER_BOUND,
            interval=0.2,
            what="the standby's rounds scaling auto to 3",
        )
        rounds_takeover = time.monotonic() - killed
        print(f"takeover after SIGKILL: {takeover:.1f} s (Greeter), {rounds_takeover:.1f} s (ScaledApp)")
        assert takeover <= TAKEOVER_BOUND, f"the standby took {takeover:.1f} s to act"
        assert rounds_takeover <= TAKEOVER_BOUND, f"the standby's rounds took {rounds_takeover:.1f} s"
        assert ACTED in processes[standby][1].read_text()[seen:]
        assert SCALED in processes[standby][1].read_text()[seen:]
    finally:
        for process, _ in processes.values():
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
