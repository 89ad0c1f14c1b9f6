"""The control plane's own floor: a tight asyncio client with no operator framework at all.

Runs as its own process through the counting proxy (KUBECONFIG), like every subject, so its CPU
and requests are measured the same way. It prepares everything, prints ``rawclient: ready``, then
takes commands on stdin (one per line) and prints ``rawclient: done <n> <seconds>`` after each:

``burst``: the floor of a Greeter burst. ``go`` creates, for Greeters ``g-00000`` .. ``g-{N-1}``, the
very Deployment and Service kopfscale would (kopfscale's pure manifest functions, without the
owner reference: there is no Greeter), ``--concurrency`` at a time, each Deployment then its
Service, as one operator worker would.

    python -m bench.rawclient burst --namespace NS --n 300 --concurrency 32

``scale``: the step applied directly. ``<replicas>`` PATCHes ``/scale`` of every Deployment named
``--prefix*`` in the namespace, ``--concurrency`` at a time: how fast the control plane lets a
step land when nobody has to notice it first.

    python -m bench.rawclient scale --namespace react --prefix sa- --concurrency 32

``poll``: a reference autoscaler, the 50-line loop kopfscale's reaction is compared with: per
Deployment, every ``--interval`` seconds (phases spread evenly), GET the metric, ``ceil(value /
10)`` within 1..10, PATCH ``/scale`` when it differs from what it last wrote or read. Runs until
stdin closes.

    python -m bench.rawclient poll --namespace react --prefix sa- --metric-url URL --interval 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

MERGE_PATCH = "application/merge-patch+json"


class Client:
    """Raw JSON over one keep-alive aiohttp session to the server of $KUBECONFIG (the proxy)."""

    def __init__(self, concurrency: int) -> None:
        config = json.loads(Path(os.environ["KUBECONFIG"]).read_text())
        self.server = config["clusters"][0]["cluster"]["server"].rstrip("/")
        token = (config["users"][0].get("user") or {}).get("token")
        self.headers = {
            "Accept": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        }
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency + 4),
            timeout=aiohttp.ClientTimeout(total=120, sock_connect=10),
        )

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        data = json.dumps(body) if body is not None else None
        headers = {**self.headers, "Content-Type": content_type}
        for attempt in range(5):
            try:
                async with self.session.request(
                    method, self.server + path, data=data, headers=headers
                ) as resp:
                    text = await resp.text()
                    if resp.status in (429, 500, 503, 504) and attempt < 4:
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    return resp.status, (json.loads(text) if text else None)
            except (aiohttp.ClientError, TimeoutError):
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError("unreachable")


async def pool(concurrency: int, jobs: list[Any]) -> None:
    """Run the coroutines of ``jobs`` with at most ``concurrency`` at a time, in order."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        while not queue.empty():
            await queue.get_nowait()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def command() -> str | None:
    line = await asyncio.to_thread(sys.stdin.readline)
    return line.strip() if line else None


def done(n: int, seconds: float) -> None:
    print(f"rawclient: done {n} {seconds:.3f}", flush=True)


# --- burst ----------------------------------------------------------------------------------------
def greeter_children(namespace: str, n: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(Deployment, Service) of each Greeter the driver would create, as kopfscale builds them."""
    from kopfscale import settings
    from kopfscale.greeter import manifests, reconcile

    config = settings.load()
    out = []
    for i in range(n):
        name = f"g-{i:05d}"
        greeter = {
            "apiVersion": "kopfscale.dev/v1",
            "kind": "Greeter",
            "metadata": {"name": name, "namespace": namespace, "uid": f"00000000-0000-0000-0000-{i:012d}"},
            "spec": {"message": f"hello from {name}", "replicas": 1},
        }
        children = reconcile.desired_children(greeter, config)
        pair = []
        for kind in ("Deployment", "Service"):
            body = manifests.prune_nones(children[kind])
            body["metadata"].pop("ownerReferences", None)  # no Greeter: the GC would delete them
            pair.append(body)
        out.append((pair[0], pair[1]))
    return out


async def burst(args: argparse.Namespace) -> None:
    pairs = greeter_children(args.namespace, args.n)
    client = Client(args.concurrency)
    ns = args.namespace

    async def create(deployment: dict[str, Any], service: dict[str, Any]) -> None:
        for path, body in (
            (f"/apis/apps/v1/namespaces/{ns}/deployments", deployment),
            (f"/api/v1/namespaces/{ns}/services", service),
        ):
            status, answer = await client.request("POST", path, body)
            if status not in (201, 409):
                print(f"rawclient: POST {path}: {status} {str(answer)[:200]}", flush=True)

    print("rawclient: ready", flush=True)
    try:
        while (line := await command()) is not None:
            if line == "go":
                t0 = time.monotonic()
                await pool(args.concurrency, [create(d, s) for d, s in pairs])
                done(args.n, time.monotonic() - t0)
    finally:
        await client.close()


# --- scale and poll -------------------------------------------------------------------------------
async def deployments(client: Client, namespace: str, prefix: str) -> dict[str, int]:
    """name -> spec.replicas of the namespace's Deployments named ``prefix*``."""
    status, answer = await client.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments")
    if status != 200:
        raise RuntimeError(f"list deployments: {status} {answer}")
    return {
        d["metadata"]["name"]: int(d["spec"].get("replicas") or 0)
        for d in answer["items"]
        if d["metadata"]["name"].startswith(prefix)
    }


async def patch_scale(client: Client, namespace: str, name: str, replicas: int) -> int:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"
    status, _ = await client.request("PATCH", path, {"spec": {"replicas": replicas}}, MERGE_PATCH)
    return status


async def scale(args: argparse.Namespace) -> None:
    client = Client(args.concurrency)
    names = sorted(await deployments(client, args.namespace, args.prefix))
    print(f"rawclient: {len(names)} deployments", flush=True)
    print("rawclient: ready", flush=True)
    try:
        while (line := await command()) is not None:
            if line.isdigit():
                replicas, t0 = int(line), time.monotonic()
                await pool(
                    args.concurrency, [patch_scale(client, args.namespace, n, replicas) for n in names]
                )
                done(len(names), time.monotonic() - t0)
    finally:
        await client.close()


def wanted(value: float, target: float = 10.0, low: int = 1, high: int = 10) -> int:
    return max(low, min(high, math.ceil(value / target)))


async def poll(args: argparse.Namespace) -> None:
    client = Client(args.concurrency)
    current = await deployments(client, args.namespace, args.prefix)
    names = sorted(current)
    gate = asyncio.Semaphore(args.concurrency)

    async def loop(index: int, name: str) -> None:
        await asyncio.sleep(args.interval * index / max(len(names), 1))
        next_due = time.monotonic()
        while True:
            async with gate:
                try:
                    async with client.session.get(args.metric_url) as resp:
                        value = float((await resp.json())["value"])
                    replicas = wanted(value)
                    if replicas != current[name] and await patch_scale(
                        client, args.namespace, name, replicas
                    ) in (200, 201):
                        current[name] = replicas
                except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as e:
                    print(f"rawclient: {name}: {e}", flush=True)
            next_due += args.interval
            await asyncio.sleep(max(0.0, next_due - time.monotonic()))

    tasks = [asyncio.create_task(loop(i, n)) for i, n in enumerate(names)]
    print(f"rawclient: {len(names)} deployments", flush=True)
    print("rawclient: ready", flush=True)
    try:
        while await command() is not None:
            pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("burst")
    b.add_argument("--namespace", required=True)
    b.add_argument("--n", type=int, required=True)
    b.add_argument("--concurrency", type=int, default=32)
    for name in ("scale", "poll"):
        p = sub.add_parser(name)
        p.add_argument("--namespace", required=True)
        p.add_argument("--prefix", default="sa-")
        p.add_argument("--concurrency", type=int, default=32)
        if name == "poll":
            p.add_argument("--metric-url", required=True)
            p.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run({"burst": burst, "scale": scale, "poll": poll}[args.mode](args))


if __name__ == "__main__":
    main()
