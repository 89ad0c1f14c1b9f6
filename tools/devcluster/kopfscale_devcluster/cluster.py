"""Start and stop a real control plane as local processes on free loopback ports.

Every process is started with a parent-death signal, so even a test run killed with SIGKILL
leaves no etcd or apiserver behind; ``stop()`` terminates them in reverse order.

Fault tests can stop, restart, freeze and thaw one component (:meth:`LocalCluster.stop_component`,
:meth:`~LocalCluster.start_component`, :meth:`~LocalCluster.freeze`, :meth:`~LocalCluster.thaw`) and
put a blackholing proxy in front of the apiserver (:meth:`~LocalCluster.proxy`). A component
stopped on purpose is not a failure; one that exits unasked still is (:meth:`~LocalCluster.check_alive`).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kopfscale_devcluster import keda, metrics, pki
from kopfscale_devcluster.binaries import Binaries, ensure_built
from kopfscale_devcluster.proxy import TcpProxy

logger = logging.getLogger(__name__)

SERVICE_CIDR = "10.0.0.0/16"  # room for thousands of Services (a /24 runs out at 253)
POD_CIDR = "10.244.0.0/16"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when the starting thread dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_state(pid: int) -> str:
    """The one-letter state of a process from ``/proc/<pid>/stat`` ("T" when stopped)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def _wait_for_state(pid: int, *, stopped: bool, timeout: float = 5.0) -> None:
    """Poll until a signalled process is (or no longer is) stopped; raise when it never gets there."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = process_state(pid)
        except FileNotFoundError:
            return  # gone: nothing left to wait for; the caller's liveness checks say so
        if (state == "T") == stopped:
            return
        if time.monotonic() > deadline:
            wanted = "stopped" if stopped else "running"
            raise TimeoutError(f"process {pid} is in state {state!r}, not {wanted}")
        time.sleep(0.005)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    argv: list[str]
    env: dict[str, str] | None = None  # extra environment, kept for a restart
    stopped: bool = False  # stopped on purpose (stop_component): its exit is not a failure
    frozen: bool = False  # SIGSTOPped (freeze): alive, but it answers nothing until thawed


@dataclass
class LocalCluster:
    """A control plane in ``state_dir``: etcd, apiserver, controller-manager, scheduler, kwok and
    (``metrics_server=True``) metrics-server serving ``metrics.k8s.io`` from kwok's simulated usage.
    ``peers=True`` adds KEDA (operator + metrics API server for ``external.metrics.k8s.io``), the
    peer ScaledApp is compared with; :meth:`start_peers` adds it to a running cluster."""

    state_dir: Path | None = None
    nodes: int = 1
    binaries: Binaries | None = None
    processes: list[Process] = field(default_factory=list)
    proxies: list[TcpProxy] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    apiserver_port: int = 0
    kwok_port: int = 0
    metrics_server: bool = True
    metrics_server_port: int = 0
    peers: bool = False
    keda_port: int = 0
    _own_state_dir: bool = False

    # -- paths ---------------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        assert self.state_dir is not None
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.popen.pid for p in self.processes}

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> LocalCluster:
        started = time.monotonic()
        self.binaries = self.binaries or ensure_built(peers=self.peers)
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="kopfscale-cluster-"))
            self._own_state_dir = True
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        self.timings["ready"] = time.monotonic() - started
        return self

    def _start(self, timeout: float) -> None:
        assert self.state_dir is not None and self.binaries is not None
        t0 = time.monotonic()
        certs = pki.generate(self.state_dir / "pki")
        self.timings["pki"] = time.monotonic() - t0
        deadline = time.monotonic() + timeout

        etcd_port, etcd_peer_port = free_port(), free_port()
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=8589934592",
            ],
        )

        self.apiserver_port = free_port()
        p = certs.path
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={p('apiserver.crt')}",
                f"--tls-private-key-file={p('apiserver.key')}",
                f"--client-ca-file={p('ca.crt')}",
                "--anonymous-auth=false",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={p('sa.pub')}",
                f"--service-account-signing-key-file={p('sa.key')}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                # Aggregation layer (metrics.k8s.io served by a local metrics-server).
                f"--requestheader-client-ca-file={p('front-proxy-ca.crt')}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-username-headers=X-Remote-User",
                f"--proxy-client-cert-file={p('front-proxy-client.crt')}",
                f"--proxy-client-key-file={p('front-proxy-client.key')}",
                # No --enable-aggregator-routing: the aggregator then resolves an APIService's
                # Service itself, which lets an ExternalName "localhost" Service reach a local
                # metrics-server (Endpoints may not hold loopback addresses).
                "--event-ttl=1h",
                "--v=0",
            ],
        )
        self._write_kubeconfig(certs)
        self._wait_ready(deadline)
        self.timings["apiserver"] = time.monotonic() - t0

        kubeconfig = str(self.kubeconfig)
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={p('sa.key')}",
                f"--root-ca-file={p('ca.crt')}",
                "--use-service-account-credentials=true",
                f"--cluster-cidr={POD_CIDR}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                # No cloud, no real kubelets: the controllers that assume them only add noise.
                "--controllers=*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle,-persistentvolume-binder,-attachdetach",
                "--concurrent-deployment-syncs=20",
                "--concurrent-replicaset-syncs=20",
                "--concurrent-gc-syncs=40",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                # The HPA (and KEDA's HPAs) act every 5 s instead of every 15 s: tests and benches
                # see a decision within a few seconds (keda.HPA_SYNC_PERIOD says so to readers).
                f"--horizontal-pod-autoscaler-sync-period={keda.HPA_SYNC_PERIOD}",
                "--v=0",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                "--v=0",
            ],
        )
        self.kwok_port = free_port()
        self._spawn(
            "kwok",
            [
                str(self.binaries.kwok),
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                # kwok plays every node's kubelet on this one address (metrics-server scrapes it).
                f"--server-address=127.0.0.1:{self.kwok_port}",
                f"--tls-cert-file={p('kwok.crt')}",
                f"--tls-private-key-file={p('kwok.key')}",
                "--node-ip=127.0.0.1",
                f"--node-port={self.kwok_port}",
                "--cidr=10.244.0.0/16",
                "--node-lease-duration-seconds=40",
                *([f"--config={metrics.write_kwok_config(self.state_dir)}"] if self.metrics_server else []),
            ],
        )
        if self.metrics_server:
            self.metrics_server_port = free_port()
            argv = metrics.server_argv(
                self.binaries.metrics_server, certs, self.kubeconfig, self.metrics_server_port
            )
            self._spawn("metrics-server", argv)
            metrics.register(self.request, self.metrics_server_port, certs)
        for index in range(self.nodes):
            self._create_node(f"kwok-node-{index}")
        self._wait_settled(deadline)
        if self.metrics_server:
            self._wait(deadline, "the metrics.k8s.io APIService", lambda: metrics.available(self.request))
        if self.peers:
            self._start_peers(deadline)

    @property
    def peers_running(self) -> bool:
        return any(p.name == "keda-operator" for p in self.processes)

    def start_peers(self, timeout: float = 90.0) -> None:
        """Start KEDA on this running cluster (a no-op when it runs already), building it if needed."""
        if self.peers_running:
            return
        self.binaries = ensure_built(peers=True)
        self.peers = True
        self._start_peers(time.monotonic() + timeout)

    def _start_peers(self, deadline: float) -> None:
        assert self.state_dir is not None and self.binaries is not None
        started = time.monotonic()
        certs = pki.Pki(self.state_dir / "pki")
        keda.install(
            self.request,
            [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}"],
            self.binaries.keda_dir,
        )
        kubeconfig = keda.write_kubeconfig(
            self.request, self.state_dir / "kubeconfig-keda", self.server, certs
        )
        cert_dir = keda.issue_certs(certs)
        self.keda_port = free_port()
        ports = {
            "grpc": free_port(),
            "operator-metrics": free_port(),
            "operator-probe": free_port(),
            "adapter": self.keda_port,
            "adapter-metrics": free_port(),
        }
        env = dict(keda.environment(kubeconfig))
        self._spawn("keda-operator", keda.operator_argv(self.binaries.keda, kubeconfig, cert_dir, ports), env)
        self._spawn(
            "keda-metrics-apiserver",
            keda.adapter_argv(self.binaries.keda_adapter, kubeconfig, cert_dir, ports),
            env,
        )
        keda.register(self.request, self.keda_port, certs)
        self._wait(
            deadline, "the external.metrics.k8s.io APIService (KEDA)", lambda: keda.available(self.request)
        )
        self.timings["peers"] = time.monotonic() - started

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        self.proxies.clear()
        for process in reversed(self.processes):
            if process.popen.poll() is None:
                if process.frozen:
                    process.popen.send_signal(signal.SIGCONT)
                process.popen.terminate()
        # A throwaway cluster needs no graceful drain: a few seconds, then SIGKILL.
        for process in reversed(self.processes):
            try:
                process.popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(timeout=10)
        self.processes.clear()
        if self._own_state_dir and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults: one component at a time -------------------------------------------------------
    def component(self, name: str) -> Process:
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(f"no component {name!r}; the components are {[p.name for p in self.processes]}")

    def stop_component(self, name: str, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop one component (SIGTERM, or SIGKILL with ``kill=True``); the others keep running and
        :meth:`check_alive` does not count it as failed. Its state (etcd's data, certificates,
        ports) is kept for :meth:`start_component`."""
        process = self.component(name)
        process.stopped = True
        if process.popen.poll() is None:
            if process.frozen:
                process.popen.send_signal(signal.SIGCONT)
            process.popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait(timeout=10)
        process.frozen = False

    def start_component(self, name: str, timeout: float = 60.0) -> None:
        """Start a stopped (or crashed) component again with its original command line (same
        ports, same data). For the apiserver, returns once ``/readyz`` answers 200."""
        process = self.component(name)
        if process.popen.poll() is None:
            raise RuntimeError(f"{name} is running (pid {process.popen.pid}); stop it first")
        self._spawn(name, process.argv, process.env)
        if name == "kube-apiserver":
            self._wait_ready(time.monotonic() + timeout)

    def restart_component(self, name: str, *, kill: bool = True, timeout: float = 60.0) -> None:
        self.stop_component(name, kill=kill)
        self.start_component(name, timeout=timeout)

    def freeze(self, name: str) -> None:
        """SIGSTOP one component: its sockets stay open and accept nothing (requests hang).

        Returns once the kernel reports the process stopped: a signal is delivered
        asynchronously, and a busy many-threaded server can still be running for a few
        milliseconds after ``kill`` returned — a caller that acts "while frozen" must not
        race that."""
        process = self.component(name)
        process.popen.send_signal(signal.SIGSTOP)
        process.frozen = True
        _wait_for_state(process.popen.pid, stopped=True)

    def thaw(self, name: str) -> None:
        """SIGCONT a frozen component: what queued up meanwhile is served."""
        process = self.component(name)
        process.popen.send_signal(signal.SIGCONT)
        process.frozen = False
        _wait_for_state(process.popen.pid, stopped=False)

    def proxy(self) -> TcpProxy:
        """A loopback TCP proxy in front of the apiserver, with a kubeconfig of its own
        (``proxy.kubeconfig``), that can blackhole its connections; closed by :meth:`stop`."""
        assert self.state_dir is not None
        proxy = TcpProxy(("127.0.0.1", self.apiserver_port)).start()
        self.proxies.append(proxy)
        config = json.loads(self.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = proxy.url
        proxy.kubeconfig = self.state_dir / f"kubeconfig-proxy-{proxy.port}"
        proxy.kubeconfig.write_text(json.dumps(config, indent=2))
        proxy.kubeconfig.chmod(0o600)
        return proxy

    def check_alive(self) -> None:
        """Raise if a component exited that nobody stopped on purpose (with its log's tail)."""
        for process in self.processes:
            code = process.popen.poll()
            if code is not None and not process.stopped:
                tail = process.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{process.name} exited with code {code}; log tail:\n{tail}")

    # -- helpers ---------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        """Start ``argv`` as component ``name``; a restart appends to its log and keeps its place."""
        assert self.state_dir is not None
        log = self.state_dir / f"{name}.log"
        restart = any(p.name == name for p in self.processes)
        with log.open("ab" if restart else "wb") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # noqa: PLW1509  (prctl only, before exec)
                cwd=self.state_dir,
                env={**os.environ, **env} if env else None,
            )
        process = Process(name, popen, log, list(argv), env)
        if restart:
            index = next(i for i, p in enumerate(self.processes) if p.name == name)
            self.processes[index] = process
        else:
            self.processes.append(process)

    def _write_kubeconfig(self, certs: pki.Pki) -> None:
        def b64(name: str) -> str:
            return base64.b64encode(certs.path(name).read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kopfscale-local",
                    "cluster": {"server": self.server, "certificate-authority-data": b64("ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "kopfscale-admin",
                    "user": {
                        "client-certificate-data": b64("admin.crt"),
                        "client-key-data": b64("admin.key"),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "kopfscale-local",
                    "context": {
                        "cluster": "kopfscale-local",
                        "user": "kopfscale-admin",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "kopfscale-local",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def ssl_context(self) -> ssl.SSLContext:
        assert self.state_dir is not None
        pki_dir = self.state_dir / "pki"
        context = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
        context.load_cert_chain(str(pki_dir / "admin.crt"), str(pki_dir / "admin.key"))
        return context

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """An admin request to the apiserver (used before any client library is involved)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.server + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=5) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def _wait(self, deadline: float, what: str, check: Any) -> None:
        while True:
            self.check_alive()
            with contextlib.suppress(OSError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"local control plane: timed out waiting for {what}")
            time.sleep(0.1)

    def _wait_ready(self, deadline: float) -> None:
        self._wait(deadline, "kube-apiserver /readyz", lambda: self.request("GET", "/readyz")[0] == 200)

    def _create_node(self, name: str) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {
                    "kwok.x-k8s.io/node": "fake",
                    "node.alpha.kubernetes.io/ttl": "0",
                    **metrics.node_annotations(name),
                },
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            },
        }
        status, body = self.request("POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise RuntimeError(f"could not create node {name}: {status} {body}")

    def _wait_settled(self, deadline: float) -> None:
        def nodes_ready() -> bool:
            status, body = self.request("GET", "/api/v1/nodes")
            if status != 200:
                return False
            ready = [
                n
                for n in body.get("items", [])
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
            ]
            return len(ready) >= self.nodes

        def default_service_account() -> bool:
            return self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200

        self._wait(deadline, "kwok node Ready", nodes_ready)
        self._wait(deadline, "the default ServiceAccount (controller-manager)", default_service_account)

    def env(self) -> dict[str, str]:
        assert self.binaries is not None
        path = os.pathsep.join([*(str(d) for d in self.binaries.bin_dirs), os.environ.get("PATH", "")])
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}
