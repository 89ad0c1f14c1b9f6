"""The benchmark's fixtures: the local control plane (with KEDA when peers are on), the counting
proxies, the metric server, the processes under test and the driver's objects.

Processes under test (:meth:`Bench.subject`), one at a time on the main counting proxy:

* ``kopfscale``: ``kopfscale run -A --standalone``, with ``/metrics`` on a loopback port;
* ``census``: the same operator under bench/census.py's wrapper (a SIGUSR1 memory census);
* ``floor`` / ``minimal``: bench/floor.py, kopf alone with kopfscale's watches (and, for
  ``minimal``, the Greeter's Deployment + Service created by one kopf handler);
* ``baseline``: bench/baseline.py, the naive loop;
* tools (:meth:`Bench.tool`): bench/rawclient.py, the control plane's own floor (no kopf).

KEDA's two processes are part of the control plane (``LocalCluster(peers=True)``); the bench
restarts them with kubeconfigs pointing at proxies of their own, so their requests are counted
apart from the subject's (:meth:`Bench.peer_counts`).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench import common, figures, mirror
from bench.common import Api, custom_path
from bench.proxy import READ_VERBS, WRITE_VERBS
from kopfscale_devcluster import LocalCluster, keda

BIN = Path(sys.executable).parent
FLOOR = Path(__file__).with_name("floor.py")  # kopf alone, with kopfscale's watches
KEDA_PROCESSES = ("keda-operator", "keda-metrics-apiserver")
_KUBECONFIG_FLAGS = (
    "--kubeconfig",
    "--lister-kubeconfig",
    "--authentication-kubeconfig",
    "--authorization-kubeconfig",
)


@dataclass
class Counts:
    """API requests a process made (proxy counters), as ``"VERB resource" -> n``, and the bytes the
    proxy sent back to it (watch streams included)."""

    by_key: dict[str, int] = field(default_factory=dict)
    bytes_out: int = 0

    def __sub__(self, other: Counts) -> Counts:
        keys = set(self.by_key) | set(other.by_key)
        return Counts(
            {k: self.by_key.get(k, 0) - other.by_key.get(k, 0) for k in keys},
            self.bytes_out - other.bytes_out,
        )

    def __add__(self, other: Counts) -> Counts:
        keys = set(self.by_key) | set(other.by_key)
        return Counts(
            {k: self.by_key.get(k, 0) + other.by_key.get(k, 0) for k in keys},
            self.bytes_out + other.bytes_out,
        )

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
        """Writes (authentication and authorization reviews are not: they store nothing)."""
        return sum(n for key, n in self.by_key.items() if figures.is_write(key))

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
            "bytes_in": self.bytes_out,
            "by_key": {k: v for k, v in sorted(self.by_key.items()) if v},
        }


class Subject:
    """A process under test, run through the counting proxy; CPU and RSS come from /proc.

    ``ready``: ``"watches"`` (it has opened its Greeter and ScaledApp watches, as kopf does when it
    starts working) or the text of a log line it prints when it is ready."""

    def __init__(
        self,
        bench: Bench,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        ready: str = "watches",
        stdin: bool = False,
        metrics_port: int = 0,
    ) -> None:
        self.bench = bench
        self.name = name
        self.argv = argv
        self.env = env or {}
        self.ready = ready
        self.stdin = stdin
        self.metrics_port = metrics_port
        self.popen: subprocess.Popen[bytes] | None = None
        self.log = bench.workdir / f"{name}.log"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    async def start(self, within: float = 120.0) -> float:
        """Start it and wait until it works; returns the seconds that took."""
        before = await self.bench.counts()
        started = time.monotonic()
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.popen = common.spawn(
            self.argv,
            self.log,
            env={"KUBECONFIG": str(self.bench.proxy_kubeconfig), "PYTHONUNBUFFERED": "1", **self.env},
            stdin=self.stdin,
        )
        while time.monotonic() - started < within:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            if self.ready == "watches":
                delta = (await self.bench.counts()) - before
                if delta.by_key.get("WATCH greeters") and delta.by_key.get("WATCH scaledapps"):
                    return time.monotonic() - started
            else:
                with self.log.open("rb") as f:
                    f.seek(offset)
                    if self.ready.encode() in f.read():
                        return time.monotonic() - started
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.name} did not become ready within {within:.0f} s")

    async def stop(self) -> None:
        if self.popen is not None:
            await asyncio.to_thread(common.stop, self.popen)
            self.popen = None

    def send(self, line: str) -> None:
        """One line on its stdin (the raw client's commands)."""
        assert self.popen is not None and self.popen.stdin is not None
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    async def wait_log(self, text: str, offset: int, within: float) -> bool:
        """Whether ``text`` appears in its log after byte ``offset`` within ``within`` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self.log.open("rb") as f:
                f.seek(offset)
                if text.encode() in f.read():
                    return True
            if self.popen is not None and self.popen.poll() is not None:
                return False
            await asyncio.sleep(0.05)
        return False

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def cpu(self) -> float:
        return common.cpu_seconds(self.pid)

    def rss(self) -> float:
        return common.rss_mib(self.pid)

    def peak(self) -> float:
        return common.peak_rss_mib(self.pid)

    async def metrics_text(self) -> str:
        """Its Prometheus ``/metrics`` (kopfscale only; empty when it serves none)."""
        if not self.metrics_port:
            return ""
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            async with self.bench.http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                return await resp.text() if resp.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError):
            return ""


class Bench:
    """Everything one benchmark run needs, started in ``__aenter__`` and stopped in ``__aexit__``."""

    def __init__(self, nodes: int, peers: bool = False) -> None:
        self.nodes = nodes
        self.workdir = Path(tempfile.mkdtemp(prefix="kopfscale-bench-"))
        self.cluster = LocalCluster(nodes=nodes, peers=peers)
        self.helpers: list[subprocess.Popen[bytes]] = []
        self.proxy_port = 0
        self.metric_port = 0
        self.peer_proxy_ports: dict[str, int] = {}  # KEDA process -> its counting proxy
        self.notes: list[str] = []
        self.mirror: dict[str, Any] = {}
        self.api: Api
        self.http: aiohttp.ClientSession

    @property
    def proxy_kubeconfig(self) -> Path:
        return self.workdir / "proxy-kubeconfig"

    @property
    def mirror_path(self) -> Path:
        return self.workdir / "floor-mirror.json"

    @property
    def peers(self) -> bool:
        return self.cluster.peers_running

    def metric_url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.metric_port}/value/{key}"

    async def __aenter__(self) -> Bench:
        await asyncio.to_thread(self.cluster.start)
        assert self.cluster.state_dir is not None
        peers = f", KEDA in {self.cluster.timings['peers']:.1f} s" if "peers" in self.cluster.timings else ""
        print(
            f"bench: control plane ready in {self.cluster.timings['ready']:.1f} s "
            f"({self.nodes} kwok nodes{peers})"
        )
        self.api = Api(self.cluster.server, self.cluster.ssl_context())
        self.http = aiohttp.ClientSession()
        self.proxy_port = await self._proxy("proxy")
        self.metric_port = await self._helper("metric_server", ["bench.metric_server"])
        self._write_proxy_kubeconfig(self.proxy_kubeconfig, self.proxy_port)
        self.mirror = mirror.write(self.mirror_path)
        await self._install_crds()
        if self.peers:
            await self._route_peers()
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

    async def _proxy(self, name: str) -> int:
        assert self.cluster.state_dir is not None
        pki = str(self.cluster.state_dir / "pki")
        return await self._helper(name, ["bench.proxy", "--upstream", self.cluster.server, "--pki", pki])

    @staticmethod
    def _write_proxy_kubeconfig(path: Path, port: int, namespace: str | None = None) -> None:
        # A dummy token: clients insist on some credentials; the proxy drops it and uses the admin cert.
        context: dict[str, str] = {"cluster": "proxy", "user": "bench"}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "bench", "user": {"token": "counted-by-the-proxy"}}],
            "contexts": [{"name": "proxy", "context": context}],
            "current-context": "proxy",
        }
        path.write_text(json.dumps(config))

    async def _route_peers(self) -> None:
        """Restart KEDA's processes with kubeconfigs pointing at counting proxies of their own.

        They then act as the proxy's admin identity instead of ``keda/keda-operator`` (RBAC is not
        what is measured). If KEDA's APIService is not Available again within 90 s, they are put
        back on their own kubeconfig and their requests go uncounted (said in the report)."""
        originals: dict[str, tuple[list[str], dict[str, str] | None]] = {}
        for name in KEDA_PROCESSES:
            port = await self._proxy(f"proxy-{name}")
            self.peer_proxy_ports[name] = port
            kubeconfig = self.workdir / f"kubeconfig-{name}"
            self._write_proxy_kubeconfig(kubeconfig, port, namespace=keda.NAMESPACE)
            process = self.cluster.component(name)
            originals[name] = (list(process.argv), dict(process.env) if process.env else None)
            self._restart_with(name, kubeconfig)
        if await self._keda_available(90):
            print(f"bench: KEDA's requests go through proxies of their own ({self.peer_proxy_ports})")
            self.notes.append(
                "KEDA's operator and metrics server reach the API server through counting proxies of "
                "their own, as the proxies' admin identity (not keda-operator's RBAC: not what is measured)."
            )
            return
        for name, (argv, env) in originals.items():
            await asyncio.to_thread(self.cluster.stop_component, name)
            process = self.cluster.component(name)
            process.argv, process.env = argv, env
            await asyncio.to_thread(self.cluster.start_component, name)
        self.peer_proxy_ports.clear()
        self.notes.append(
            "KEDA did not come up through the counting proxies: its API requests are not counted."
        )
        await self._keda_available(90)

    def _restart_with(self, name: str, kubeconfig: Path) -> None:
        self.cluster.stop_component(name)
        process = self.cluster.component(name)
        process.argv = [
            f"{arg.split('=', 1)[0]}={kubeconfig}" if arg.split("=", 1)[0] in _KUBECONFIG_FLAGS else arg
            for arg in process.argv
        ]
        process.env = {**(process.env or {}), "KUBECONFIG": str(kubeconfig)}
        self.cluster.start_component(name)

    async def _keda_available(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                if await asyncio.to_thread(keda.available, self.cluster.request):
                    return True
            except OSError:
                pass
            await asyncio.sleep(1.0)
        return False

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

    # -- the processes under test -------------------------------------------------------------------
    def subject(self, name: str) -> Subject:
        """``kopfscale``, ``census``, ``floor``, ``minimal`` or ``baseline`` (see the module docstring)."""
        run = ["run", "--all-namespaces", "--standalone"]
        if name == "kopfscale":
            port = common.free_port()
            argv = [
                str(BIN / "kopfscale"),
                *run,
                "--metrics-port",
                str(port),
                "--metrics-address",
                "127.0.0.1",
            ]
            return Subject(self, name, argv, metrics_port=port)
        if name == "census":
            argv = [sys.executable, "-m", "bench.census", "serve", "--", *run]
            return Subject(self, name, argv, env={"KOPFSCALE_CENSUS_DIR": str(self.workdir)})
        if name in ("floor", "minimal"):
            argv = [str(BIN / "kopf"), *run, "-q", str(FLOOR)]
            env = {"KOPFSCALE_FLOOR_MIRROR": str(self.mirror_path), "KOPFSCALE_FLOOR_MODE": name}
            return Subject(self, name, argv, env=env)
        if name == "baseline":
            return Subject(self, name, [sys.executable, "-m", "bench.baseline"], ready="first pass done")
        raise ValueError(f"no subject {name!r}")

    def tool(self, name: str, args: list[str]) -> Subject:
        """bench/rawclient.py with ``args``: takes commands on stdin, prints ``ready`` when listening."""
        argv = [sys.executable, "-m", "bench.rawclient", *args]
        return Subject(self, name, argv, ready="rawclient: ready", stdin=True)

    # -- proxy counters, the metric, the control plane's processes ------------------------------------
    async def counts(self, port: int | None = None) -> Counts:
        url = f"http://127.0.0.1:{port or self.proxy_port}/__bench/counts"
        async with self.http.get(url) as resp:
            data = await resp.json()
        return Counts(dict(data["requests"]), int(data.get("bytes_out", 0)))

    async def peer_counts(self) -> dict[str, Counts]:
        """KEDA's processes' counters (empty when they are not routed through proxies)."""
        return {name: await self.counts(port) for name, port in self.peer_proxy_ports.items()}

    async def set_metric(self, key: str, value: float) -> None:
        async with self.http.put(self.metric_url(key), params={"v": str(value)}) as resp:
            resp.raise_for_status()

    def component_pid(self, name: str) -> int | None:
        try:
            process = self.cluster.component(name)
        except KeyError:
            return None
        return process.popen.pid if process.popen.poll() is None else None

    def component_cpu(self, name: str) -> float:
        pid = self.component_pid(name)
        return common.cpu_seconds(pid) if pid else math.nan

    def component_rss(self, name: str) -> float:
        pid = self.component_pid(name)
        return common.rss_mib(pid) if pid else math.nan

    async def kcm_requests(self) -> dict[str, float]:
        """kube-controller-manager's own API requests so far by method (its ``rest_client_requests_total``,
        read from its secure port with the admin certificate); empty if unreadable."""
        try:
            process = self.cluster.component("kube-controller-manager")
        except KeyError:
            return {}
        port = next((a.split("=", 1)[1] for a in process.argv if a.startswith("--secure-port=")), None)
        assert self.cluster.state_dir is not None
        pki = self.cluster.state_dir / "pki"
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # its serving certificate is self-signed at startup
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        try:
            async with self.http.get(
                f"https://127.0.0.1:{port}/metrics", ssl=context, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return {}
        return figures.counter_by_label(text, "rest_client_requests_total", "method")

    # -- objects ---------------------------------------------------------------------------------------
    def greeter(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{common.GROUP}/{common.VERSION}",
            "kind": "Greeter",
            "metadata": {"name": name},
            "spec": {"message": f"hello from {name}", "replicas": 1},
        }

    @staticmethod
    def template(name: str) -> dict[str, Any]:
        """The Pod template of every autoscaled workload (ScaledApp's ``template``, KEDA's Deployments)."""
        return {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
        }

    def scaledapp(self, name: str, key: str, polling_interval: int) -> dict[str, Any]:
        no_window = {"stabilizationWindowSeconds": 0}
        return {
            "apiVersion": f"{common.GROUP}/{common.VERSION}",
            "kind": "ScaledApp",
            "metadata": {"name": name},
            "spec": {
                "template": self.template(name),
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

    def scaled_object(self, name: str, key: str, polling_interval: int) -> dict[str, Any]:
        """KEDA's equivalent of :meth:`scaledapp` on the Deployment ``name``: a ``metrics-api`` trigger
        on the same URL, AverageValue 10, replicas 1..10, no stabilization window either way."""
        no_window = {"stabilizationWindowSeconds": 0}
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": name},
            "spec": {
                "scaleTargetRef": {"name": name},
                "pollingInterval": polling_interval,
                "minReplicaCount": 1,
                "maxReplicaCount": 10,
                "advanced": {
                    "horizontalPodAutoscalerConfig": {
                        "behavior": {"scaleUp": no_window, "scaleDown": no_window}
                    }
                },
                "triggers": [
                    {
                        "type": "metrics-api",
                        "metricType": "AverageValue",
                        "metadata": {
                            "url": self.metric_url(key),
                            "valueLocation": "value",
                            "targetValue": "10",
                        },
                    }
                ],
            },
        }

    @staticmethod
    def plain_deployment(name: str, replicas: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
        """A Deployment that is not kopfscale's (no managed-by label)."""
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name, **(labels or {})}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": Bench.template(name),
            },
        }

    @staticmethod
    def plain_service(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]},
        }

    async def create_many(
        self, plural: str, namespace: str, bodies: list[dict[str, Any]], path: str | None = None
    ) -> dict[str, float]:
        """Create all at once (bounded concurrency) in the custom collection ``plural`` (or at
        ``path``); name -> monotonic time the apiserver answered."""
        created: dict[str, float] = {}
        collection = path or custom_path(plural, namespace)

        async def one(body: dict[str, Any]) -> None:
            for attempt in range(5):
                try:
                    await self.api.create(collection, body)
                    break
                except common.ApiError as e:
                    if e.status == 409:
                        break
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.5 * (attempt + 1))
                except (TimeoutError, aiohttp.ClientError):
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
