"""The benchmark's fixtures: the local control plane, the counting proxy, the metric server, the
process under test (kopfscale or the baseline) and the driver's objects."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import common
from bench.common import Api, custom_path
from bench.proxy import READ_VERBS, WRITE_VERBS
from kopfscale_devcluster import LocalCluster

BIN = Path(sys.executable).parent
FLOOR = Path(__file__).with_name("floor.py")  # kopf alone, with kopfscale's watches


@dataclass
class Counts:
    """API requests the process under test made (proxy counters), as ``"VERB resource" -> n``."""

    by_key: dict[str, int] = field(default_factory=dict)

    def __sub__(self, other: Counts) -> Counts:
        keys = set(self.by_key) | set(other.by_key)
        return Counts({k: self.by_key.get(k, 0) - other.by_key.get(k, 0) for k in keys})

    def _sum(self, verbs: Iterable[str], resource_prefixes: tuple[str, ...] = ("",)) -> int:
        total = 0
        for key, n in self.by_key.items():
            verb, resource = key.split(" ", 1)
            if verb in verbs and resource.startswith(resource_prefixes):
                total += n
        return total

    @property
    def total(self) -> int:
        return sum(self.by_key.values())

    @property
    def reads(self) -> int:
        return self._sum(READ_VERBS)

    @property
    def writes(self) -> int:
        return self._sum(WRITE_VERBS)

    @property
    def child_writes(self) -> int:
        """Writes to Deployments and Services (scale changes included)."""
        return self._sum(WRITE_VERBS, ("deployments", "services"))

    def summary(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "reads": self.reads,
            "writes": self.writes,
            "child_writes": self.child_writes,
            "by_key": {k: v for k, v in sorted(self.by_key.items()) if v},
        }


class Subject:
    """The process under test, run through the counting proxy; CPU and RSS come from /proc."""

    def __init__(self, bench: Bench, name: str) -> None:
        self.bench = bench
        self.name = name
        self.popen: subprocess.Popen[bytes] | None = None
        self.log = bench.workdir / f"{name}.log"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def argv(self) -> list[str]:
        if self.name == "kopfscale":
            return [str(BIN / "kopfscale"), "run", "--all-namespaces", "--standalone"]
        if self.name == "floor":  # kopf alone with kopfscale's watches (bench/floor.py)
            return [str(BIN / "kopf"), "run", "--all-namespaces", "--standalone", "-q", str(FLOOR)]
        return [sys.executable, "-m", "bench.baseline"]

    async def start(self, within: float = 120.0) -> float:
        """Start it and wait until it works (watching, or one pass done); returns the seconds that took."""
        before = await self.bench.counts()
        started = time.monotonic()
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.popen = common.spawn(
            self.argv(),
            self.log,
            env={"KUBECONFIG": str(self.bench.proxy_kubeconfig), "PYTHONUNBUFFERED": "1"},
        )
        while time.monotonic() - started < within:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            if self.name in ("kopfscale", "floor"):
                delta = (await self.bench.counts()) - before
                if delta.by_key.get("WATCH greeters") and delta.by_key.get("WATCH scaledapps"):
                    return time.monotonic() - started
            else:
                with self.log.open("rb") as f:
                    f.seek(offset)
                    if b"first pass done" in f.read():
                        return time.monotonic() - started
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.name} did not become ready within {within:.0f} s")

    async def stop(self) -> None:
        if self.popen is not None:
            await asyncio.to_thread(common.stop, self.popen)
            self.popen = None

    def cpu(self) -> float:
        return common.cpu_seconds(self.pid)

    def rss(self) -> float:
        return common.rss_mib(self.pid)

    def peak(self) -> float:
        return common.peak_rss_mib(self.pid)


class Bench:
    """Everything one benchmark run needs, started in ``__aenter__`` and stopped in ``__aexit__``."""

    def __init__(self, nodes: int) -> None:
        self.nodes = nodes
        self.workdir = Path(tempfile.mkdtemp(prefix="kopfscale-bench-"))
        self.cluster = LocalCluster(nodes=nodes)
        self.helpers: list[subprocess.Popen[bytes]] = []
        self.proxy_port = 0
        self.metric_port = 0
        self.api: Api
        self.http: aiohttp.ClientSession

    @property
    def proxy_kubeconfig(self) -> Path:
        return self.workdir / "proxy-kubeconfig"

    def metric_url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.metric_port}/value/{key}"

    async def __aenter__(self) -> Bench:
        await asyncio.to_thread(self.cluster.start)
        assert self.cluster.state_dir is not None
        print(
            f"bench: control plane ready in {self.cluster.timings['ready']:.1f} s ({self.nodes} kwok nodes)"
        )
        self.api = Api(self.cluster.server, self.cluster.ssl_context())
        self.http = aiohttp.ClientSession()
        self.proxy_port = await self._helper(
            "proxy",
            [
                "bench.proxy",
                "--upstream",
                self.cluster.server,
                "--pki",
                str(self.cluster.state_dir / "pki"),
            ],
        )
        self.metric_port = await self._helper("metric_server", ["bench.metric_server"])
        self._write_proxy_kubeconfig()
        await self._install_crds()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.api.close()
        await self.http.close()
        for popen in self.helpers:
            common.stop(popen, timeout=5)
        await asyncio.to_thread(self.cluster.stop)

    async def _helper(self, name: str, args: list[str]) -> int:
        port_file = self.workdir / f"{name}.port"
        popen = common.spawn(
            [sys.executable, "-m", *args, "--port-file", str(port_file)], self.workdir / f"{name}.log"
        )
        self.helpers.append(popen)
        for _ in range(200):
            if port_file.exists() and port_file.read_text():
                return int(port_file.read_text())
            if popen.poll() is not None:
                break
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{name} did not start: {(self.workdir / f'{name}.log').read_text()[-2000:]}")

    def _write_proxy_kubeconfig(self) -> None:
        # A dummy token: clients insist on some credentials; the proxy drops it and uses the admin cert.
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.proxy_port}"}}],
            "users": [{"name": "bench", "user": {"token": "counted-by-the-proxy"}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "bench"}}],
            "current-context": "proxy",
        }
        self.proxy_kubeconfig.write_text(json.dumps(config))

    async def _install_crds(self) -> None:
        env = {"KUBECONFIG": str(self.cluster.kubeconfig)}
        kubectl = [str(BIN / "kopfscale"), "cluster", "kubectl"]
        for args in (
            ["apply", "--server-side", "-f", str(common.REPO / "crds")],
            ["wait", "--for", "condition=established", "--timeout=60s", "crd/greeters.kopfscale.dev"],
            ["wait", "--for", "condition=established", "--timeout=60s", "crd/scaledapps.kopfscale.dev"],
        ):
            proc = await asyncio.to_thread(
                subprocess.run,
                [*kubectl, *args],
                env={**os.environ, **env},
                capture_output=True,
                check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.decode()}")

    # -- proxy counters and the metric ------------------------------------------------------------
    async def counts(self) -> Counts:
        async with self.http.get(f"http://127.0.0.1:{self.proxy_port}/__bench/counts") as resp:
            data = await resp.json()
        return Counts(dict(data["requests"]))

    async def set_metric(self, key: str, value: float) -> None:
        async with self.http.put(self.metric_url(key), params={"v": str(value)}) as resp:
            resp.raise_for_status()

    # -- objects ---------------------------------------------------------------------------------------
    def greeter(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{common.GROUP}/{common.VERSION}",
            "kind": "Greeter",
            "metadata": {"name": name},
            "spec": {"message": f"hello from {name}", "replicas": 1},
        }

    def scaledapp(self, name: str, key: str, polling_interval: int) -> dict[str, Any]:
        no_window = {"stabilizationWindowSeconds": 0}
        return {
            "apiVersion": f"{common.GROUP}/{common.VERSION}",
            "kind": "ScaledApp",
            "metadata": {"name": name},
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
                },
                "minReplicas": 1,
                "maxReplicas": 10,
                "pollingInterval": polling_interval,
                "metrics": [
                    {
                        "name": "load",
                        "type": "http",
                        "http": {"url": self.metric_url(key), "valueLocation": "$.value"},
                        "target": {"type": "AverageValue", "value": 10},
                    }
                ],
                "behavior": {"scaleUp": no_window, "scaleDown": no_window},
            },
        }

    async def create_many(
        self, plural: str, namespace: str, bodies: list[dict[str, Any]]
    ) -> dict[str, float]:
        """Create all at once (bounded concurrency); name -> monotonic time the apiserver answered."""
        created: dict[str, float] = {}

        async def one(body: dict[str, Any]) -> None:
            for attempt in range(5):
                try:
                    await self.api.create(custom_path(plural, namespace), body)
                    break
                except common.ApiError as e:
                    if e.status == 409:
                        break
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.5 * (attempt + 1))
            created[body["metadata"]["name"]] = time.monotonic()

        await asyncio.gather(*(one(b) for b in bodies))
        return created


async def wait_until(predicate: Any, within: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


async def wait_quiet(bench: Bench, quiet: float, within: float) -> float:
    """Wait until the process under test has written nothing for ``quiet`` seconds; returns the wait."""
    started = time.monotonic()
    last = (await bench.counts()).writes
    last_change = time.monotonic()
    while time.monotonic() - started < within:
        await asyncio.sleep(1.0)
        writes = (await bench.counts()).writes
        if writes != last:
            last, last_change = writes, time.monotonic()
        elif time.monotonic() - last_change >= quiet:
            break
    return time.monotonic() - started
