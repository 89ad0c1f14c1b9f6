"""The shadow on a real control plane: objects, the metric endpoint, the driver and the recorder.

Everything stays on loopback: the endpoint listens on 127.0.0.1, KEDA (a local process) and
kopfscale read it there, and the driver talks to the apiserver on 127.0.0.1 with the admin
credentials of the kubeconfig it is given. The operator under test is started by the caller
(the test's in-process kopf runner, or ``kopfscale run`` for ``make shadow``), watching
``namespace``.

Timeline: every scenario's objects are created, then the driver waits until each side has
decided once (the HPA shows a metric, KEDA's ScaledObject is Ready, the ScaledApp has a
``lastDecision``), then all traces start together. An ``http`` step takes effect at kopfscale's
first read after its nominal start (at most one pollingInterval later), so that kopfscale has
always evaluated a new value at the count the peer had before the peer could act on it; a CPU step
takes effect when the driver has re-annotated the Pods (metrics-server shows it within a scrape).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import functools
import http.server
import json
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from bench.common import Api, ApiError
from bench.shadow.model import FRESH_SECONDS, PodsState, Recording
from bench.shadow.scenarios import PERIOD, Scenario

USAGE_CPU = "kwok.x-k8s.io/usage-cpu"
USAGE_MEMORY = "kwok.x-k8s.io/usage-memory"
POLL = 0.5  # seconds between the recorder's looks at every object
SETTLE_TIMEOUT = 120.0  # seconds for every side to have decided once


def connect(kubeconfig: Path) -> Api:
    """The driver's API client from a kubeconfig with embedded admin client credentials."""
    config = yaml.safe_load(kubeconfig.read_text())
    context_name = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    folder = Path(tempfile.mkdtemp(prefix="kopfscale-shadow-"))

    def material(name: str, data_key: str, path_key: str, where: Mapping[str, Any]) -> str:
        if where.get(data_key):
            target = folder / name
            target.write_bytes(base64.b64decode(where[data_key]))
            target.chmod(0o600)
            return str(target)
        return str(where[path_key])

    context_ssl = ssl.create_default_context(
        cafile=material("ca.crt", "certificate-authority-data", "certificate-authority", cluster)
    )
    context_ssl.load_cert_chain(
        material("client.crt", "client-certificate-data", "client-certificate", user),
        material("client.key", "client-key-data", "client-key", user),
    )
    server = str(cluster["server"])
    host = urllib.parse.urlparse(server).hostname or ""
    if not host.startswith("127.") and host not in ("localhost", "::1"):
        raise ValueError(f"the shadow runs on a loopback control plane only, not {server}")
    return Api(server, context_ssl, concurrency=16)


# --- the metric endpoint ------------------------------------------------------------------------------
class Endpoint:
    """``GET /metric/<scenario>?reader=<who>`` answers ``{"value": N}``, or 500 while the trace says
    the metric fails. Every read is logged with its time; a pending step switches in at kopfscale's
    next read (:meth:`arm`)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.active: dict[str, float | None] = {}
        self.pending: dict[str, tuple[int, float | None]] = {}
        self.recordings: dict[str, Recording] = {}
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlparse(self.path)
                name = url.path.removeprefix("/metric/")
                reader = urllib.parse.parse_qs(url.query).get("reader", ["?"])[0]
                status, body = endpoint.answer(name, reader)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, scenario: str) -> str:
        return f"http://127.0.0.1:{self.port}/metric/{scenario}"

    def register(self, rec: Recording, value: float | None) -> None:
        with self.lock:
            self.recordings[rec.scenario] = rec
            self.active[rec.scenario] = value

    def arm(self, scenario: str, step: int, value: float | None) -> None:
        """The next step, switched in at kopfscale's next read (or by :meth:`switch`)."""
        with self.lock:
            self.pending[scenario] = (step, value)

    def switch(self, scenario: str, step: int) -> None:
        """Switch ``step`` in now if it is still pending (kopfscale has not read within a period and some)."""
        with self.lock:
            if self.pending.get(scenario, (None, None))[0] == step:
                self._switch(scenario)

    def _switch(self, scenario: str) -> None:
        if scenario in self.pending:
            step, value = self.pending.pop(scenario)
            self.active[scenario] = value
            self.recordings[scenario].steps.append((self.clock(), step))

    def answer(self, scenario: str, reader: str) -> tuple[int, bytes]:
        with self.lock:
            if scenario not in self.active:
                return 404, b'{"error": "no such scenario"}'
            if reader == "kopfscale":
                self._switch(scenario)
            value = self.active[scenario]
            self.recordings[scenario].reads.append((self.clock(), reader, value))
        if value is None:
            return 500, b'{"error": "the trace says this read fails"}'
        return 200, json.dumps({"value": value}).encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the run ------------------------------------------------------------------------------------------
@dataclass
class Run:
    api: Api
    namespace: str
    scenarios: Sequence[Scenario]
    log: Callable[[str], None] = print
    endpoint: Endpoint = field(init=False)
    recordings: dict[str, Recording] = field(default_factory=dict)
    started: float = 0.0  # monotonic time of offset 0
    epoch: float = 0.0
    current_step: dict[str, int] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def clock(self) -> float:
        return time.monotonic() - self.started

    def path(self, group: str, version: str, plural: str, name: str = "", sub: str = "") -> str:
        base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        result = f"{base}/namespaces/{self.namespace}/{plural}"
        return result + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    async def execute(self) -> dict[str, Recording]:
        self.started, self.epoch = time.monotonic(), time.time()
        self.endpoint = Endpoint(self.clock)
        try:
            for s in self.scenarios:
                rec = self.recordings[s.name] = Recording(s.name, epoch=self.epoch)
                self.endpoint.register(rec, s.steps[0].value if s.metric == "http" else None)
                self.current_step[s.name] = 0
            recorder = asyncio.create_task(self.record())
            try:
                await asyncio.gather(*(self.set_up(s) for s in self.scenarios))
                await self.settle()
                # Offset 0 is the trace's start; what came before keeps negative times.
                shift = self.clock()
                self.started += shift
                self.epoch += shift
                for rec in self.recordings.values():
                    _shift(rec, -shift)
                    rec.epoch = self.epoch
                self.log(f"shadow: every side has decided; running the trace ({self.longest():.0f} s)")
                await asyncio.gather(*(self.drive(s) for s in self.scenarios))
            finally:
                self._stop.set()
                await recorder
        finally:
            self.endpoint.close()
        return self.recordings

    def longest(self) -> float:
        return max(s.duration for s in self.scenarios)

    # -- set-up ----------------------------------------------------------------------------------------
    async def set_up(self, s: Scenario) -> None:
        await self.api.create(self.path("apps", "v1", "deployments"), s.deployment())
        await self.wait(f"{s.name}'s Pods ready", lambda: self.pods_ready(s, s.start_replicas))
        if s.metric == "cpu":
            await self.wait(f"{s.name}'s Pod metrics", lambda: self.metrics_for_all(s))
        if s.peer == "hpa":
            await self.api.create(self.path("autoscaling", "v2", "horizontalpodautoscalers"), s.hpa())
        else:
            await self.api.create(
                self.path("keda.sh", "v1alpha1", "scaledobjects"), s.scaled_object(self.endpoint.url(s.name))
            )
        await self.api.create(
            self.path("kopfscale.dev", "v1", "scaledapps"), s.scaledapp(self.endpoint.url(s.name))
        )
        peer = "HPA" if s.peer == "hpa" else "ScaledObject"
        self.log(f"shadow: {s.name}: Deployment, {peer} and a ScaledApp in mode Observe on it created")

    async def settle(self) -> None:
        async def decided(s: Scenario) -> bool:
            rec = self.recordings[s.name]
            hpa = rec.hpa[-1][1] if rec.hpa else {}
            ok = bool(hpa.get("currentMetrics")) and bool(
                rec.scaledapp and rec.scaledapp[-1][1].get("lastDecision")
            )
            if s.peer == "keda":
                so = rec.keda[-1][1] if rec.keda else {}
                ok = ok and any(
                    c.get("type") == "Ready" and c.get("status") == "True" for c in so.get("conditions") or []
                )
            return ok

        def check(s: Scenario) -> Callable[[], Awaitable[bool]]:
            return lambda: decided(s)

        await asyncio.gather(*(self.wait(f"{s.name}: both sides deciding", check(s)) for s in self.scenarios))

    async def wait(self, what: str, check: Callable[[], Any], within: float = SETTLE_TIMEOUT) -> Any:
        deadline = time.monotonic() + within
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                result = await check()
                if result:
                    return result
            except ApiError as e:
                last = e
            await asyncio.sleep(0.5)
        raise TimeoutError(f"shadow: timed out after {within:.0f} s waiting for {what} (last error: {last})")

    async def pods_of(self, s: Scenario) -> list[dict[str, Any]]:
        body = await self.api.get(self.path("", "v1", "pods") + f"?labelSelector=app%3D{s.name}")
        return [p for p in body.get("items", []) if not p["metadata"].get("deletionTimestamp")]

    async def pods_ready(self, s: Scenario, n: int) -> bool:
        pods = await self.pods_of(s)
        return len(pods) == n and all(_ready(p) for p in pods)

    async def metrics_for_all(self, s: Scenario) -> bool:
        pods = {p["metadata"]["name"] for p in await self.pods_of(s)}
        body = await self.api.get(
            self.path("metrics.k8s.io", "v1beta1", "pods") + f"?labelSelector=app%3D{s.name}"
        )
        return bool(pods) and pods <= {m["metadata"]["name"] for m in body.get("items", [])}

    # -- the driver --------------------------------------------------------------------------------------
    async def drive(self, s: Scenario) -> None:
        rec = self.recordings[s.name]
        offset = 0.0
        keeper = asyncio.create_task(self.keep_pods(s)) if (s.metric == "cpu" or _marks_pods(s)) else None
        try:
            for index, step in enumerate(s.steps):
                await asyncio.sleep(max(0.0, offset - self.clock()))
                if step.replicas is not None:
                    await self.api.request(
                        "PATCH",
                        self.path("apps", "v1", "deployments", s.name, "scale"),
                        {"spec": {"replicas": step.replicas}},
                        "application/merge-patch+json",
                    )
                    rec.by_hand.append((self.clock(), step.replicas))
                self.current_step[s.name] = index
                if index > 0 and (step.unready or s.steps[index - 1].unready):
                    # The Pods first, and seen by the recorder, then the value: neither side may
                    # read the new value with the Pods still as they were.
                    await self.hold_pods(s)
                    try:
                        marked = functools.partial(self.pods_recorded, s, step.unready)
                        await self.wait(f"{s.name}'s Pods marked", marked, 5.0)
                    except TimeoutError as e:
                        self.log(str(e))
                if s.metric == "http" and index > 0:
                    self.endpoint.arm(s.name, index, step.value)
                    task = asyncio.create_task(self.force_switch(s.name, index))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    rec.steps.append((self.clock(), index))
                self.log(f"shadow: {s.name} t={self.clock():5.1f} s step {index}: {step.describe(s)}")
                offset += step.seconds
            await asyncio.sleep(max(0.0, offset - self.clock()))
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper

    async def force_switch(self, scenario: str, step: int) -> None:
        await asyncio.sleep(PERIOD + 3.0)
        self.endpoint.switch(scenario, step)

    async def keep_pods(self, s: Scenario) -> None:
        """Hold every Pod to the current step, also the ones scaling creates."""
        while True:
            try:
                await self.hold_pods(s)
            except ApiError as e:
                self.log(f"shadow: {s.name}: keeping the Pods: {e}")
            await asyncio.sleep(POLL)

    async def hold_pods(self, s: Scenario) -> None:
        """One pass: CPU usage annotations (none for the ``missing`` ones), and the ``unready``
        oldest Pods at Ready=False (the others back at True)."""
        step = s.steps[self.current_step[s.name]]
        pods = sorted(
            await self.pods_of(s),
            key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]),
        )
        for index, pod in enumerate(pods):
            name = pod["metadata"]["name"]
            if s.metric == "cpu" and step.value is not None:
                # A Pod without metrics: metrics-server drops a Pod whose memory working set is 0
                # (a CPU rate of 0 alone is a valid sample).
                missing = index < step.missing
                usage = {
                    USAGE_CPU: "0" if missing else f"{step.value:g}m",
                    USAGE_MEMORY: "0" if missing else "64Mi",
                }
                annotations = pod["metadata"].get("annotations") or {}
                if any(annotations.get(k) != v for k, v in usage.items()):
                    await self.api.merge_patch(
                        self.path("", "v1", "pods", name), {"metadata": {"annotations": usage}}
                    )
            want_ready = index >= step.unready
            if _ready(pod) != want_ready and pod.get("status", {}).get("phase") == "Running":
                await self.set_ready(name, want_ready)

    async def pods_recorded(self, s: Scenario, unready: int) -> bool:
        """Whether the recorder has seen the scenario's Pods with ``unready`` of them not ready."""
        pods = self.recordings[s.name].pods
        return bool(pods) and pods[-1].pods - pods[-1].ready == min(unready, pods[-1].pods)

    async def set_ready(self, pod: str, ready: bool) -> None:
        value = "True" if ready else "False"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            {"type": t, "status": value, "lastTransitionTime": now} for t in ("Ready", "ContainersReady")
        ]
        await self.api.request(
            "PATCH",
            self.path("", "v1", "pods", pod, "status"),
            {"status": {"conditions": conditions}},
            "application/strategic-merge-patch+json",
        )

    # -- the recorder --------------------------------------------------------------------------------------
    async def record(self) -> None:
        """Every POLL seconds: every side's status, the workloads and their Pods, kept on change;
        KEDA's ScaledObjects through a watch (below)."""
        last: dict[tuple[str, str], Any] = {}
        cpu = any(s.metric == "cpu" for s in self.scenarios)
        watcher = None
        if any(s.peer == "keda" for s in self.scenarios):
            watcher = asyncio.create_task(self.watch_scaled_objects())
        try:
            while not self._stop.is_set():
                try:
                    await self.look(last, cpu=cpu)
                except ApiError as e:
                    self.log(f"shadow: recorder: {e}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=POLL)
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def watch_scaled_objects(self) -> None:
        """Every status KEDA writes, through a watch: KEDA counts a failed read per read (its polling
        loop's and each HPA request's), often two within milliseconds, each its own status patch;
        polling would miss every other count."""
        by_name = {s.name: self.recordings[s.name] for s in self.scenarios if s.peer == "keda"}
        collection = self.path("keda.sh", "v1alpha1", "scaledobjects")
        last: dict[str, Any] = {}

        def seen(obj: Mapping[str, Any]) -> None:
            rec = by_name.get(obj.get("metadata", {}).get("name", ""))
            status = obj.get("status")
            if rec is not None and status is not None and last.get(rec.scenario) != status:
                last[rec.scenario] = status
                rec.keda.append((self.clock(), status))

        while True:
            try:
                listing = await self.api.get(collection)
                for item in listing.get("items", []):
                    seen(item)
                version = listing["metadata"]["resourceVersion"]
                url = f"{self.api.server}{collection}?watch=1&resourceVersion={version}&timeoutSeconds=600"
                async with self.api.session.get(url) as resp:
                    async for line in resp.content:
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            break  # e.g. 410 Gone: list again
                        seen(event.get("object") or {})
            except (ApiError, OSError, ValueError, aiohttp.ClientError) as e:
                self.log(f"shadow: watching ScaledObjects: {e!r}; again")
                await asyncio.sleep(0.5)

    async def look(self, last: dict[tuple[str, str], Any], *, cpu: bool) -> None:
        requests = {
            "hpa": self.api.get(self.path("autoscaling", "v2", "horizontalpodautoscalers")),
            "scaledapp": self.api.get(self.path("kopfscale.dev", "v1", "scaledapps")),
            "deployment": self.api.get(self.path("apps", "v1", "deployments")),
            "pod": self.api.get(self.path("", "v1", "pods") + "?labelSelector=kopfscale.dev%2Fshadow%3Dtrue"),
        }
        if cpu:
            requests["metrics"] = self.api.get(self.path("metrics.k8s.io", "v1beta1", "pods"))
        answers = dict(
            zip(requests, await asyncio.gather(*requests.values(), return_exceptions=True), strict=True)
        )
        now, wall = self.clock(), time.time()

        def items(kind: str) -> dict[str, dict[str, Any]]:
            body = answers.get(kind)
            if isinstance(body, BaseException) or not isinstance(body, Mapping):
                return {}
            return {i["metadata"]["name"]: i for i in body.get("items", [])}

        hpas, apps, deps = items("hpa"), items("scaledapp"), items("deployment")
        pods = list(items("pod").values())
        sampled = set(items("metrics"))
        for s in self.scenarios:
            rec = self.recordings[s.name]

            def changed(kind: str, value: Any, name: str = s.name) -> bool:
                key = (name, kind)
                if value is None or last.get(key) == value:
                    return False
                last[key] = value
                return True

            hpa_status: dict[str, Any] | None = (hpas.get(s.hpa_name) or {}).get("status")
            if hpa_status is not None and changed("hpa", hpa_status):
                rec.hpa.append((now, hpa_status))
            app_status: dict[str, Any] | None = (apps.get(s.name) or {}).get("status")
            if app_status is not None and changed("scaledapp", app_status):
                rec.scaledapp.append((now, app_status))
            dep = deps.get(s.name)
            if dep is not None:
                counts = (int(dep["spec"].get("replicas", 0)), int(dep.get("status", {}).get("replicas", 0)))
                if changed("workload", counts):
                    rec.workload.append((now, *counts))
            mine = [p for p in pods if p["metadata"].get("labels", {}).get("app") == s.name]
            mine = [
                p
                for p in mine
                if not p["metadata"].get("deletionTimestamp") and p.get("status", {}).get("phase") != "Failed"
            ]
            state = PodsState(
                time=now,
                pods=len(mine),
                ready=sum(_ready(p) for p in mine),
                with_metrics=sum(p["metadata"]["name"] in sampled for p in mine),
                fresh=sum(_fresh(p, wall) for p in mine),
            )
            if changed("pods", (state.pods, state.ready, state.with_metrics, state.fresh)):
                rec.pods.append(state)


def _shift(rec: Recording, by: float) -> None:
    rec.steps = [(t + by, i) for t, i in rec.steps]
    rec.reads = [(t + by, r, v) for t, r, v in rec.reads]
    rec.hpa = [(t + by, s) for t, s in rec.hpa]
    rec.keda = [(t + by, s) for t, s in rec.keda]
    rec.scaledapp = [(t + by, s) for t, s in rec.scaledapp]
    rec.workload = [(t + by, a, b) for t, a, b in rec.workload]
    rec.pods = [PodsState(p.time + by, p.pods, p.ready, p.with_metrics, p.fresh) for p in rec.pods]
    rec.by_hand = [(t + by, r) for t, r in rec.by_hand]


def _marks_pods(s: Scenario) -> bool:
    return any(step.unready or step.missing for step in s.steps)


def _ready_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    conditions: list[Mapping[str, Any]] = pod.get("status", {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


def _ready(pod: Mapping[str, Any]) -> bool:
    condition = _ready_condition(pod)
    return (
        pod.get("status", {}).get("phase") == "Running"
        and condition is not None
        and condition.get("status") == "True"
    )


def _fresh(pod: Mapping[str, Any], wall: float) -> bool:
    """Ready for less than FRESH_SECONDS: within the HPA's first CPU samples of a new Pod."""
    condition = _ready_condition(pod)
    if condition is None or condition.get("status") != "True":
        return False
    try:
        since = datetime.datetime.fromisoformat(
            str(condition.get("lastTransitionTime")).replace("Z", "+00:00")
        )
    except ValueError:
        return False
    return wall - since.timestamp() < FRESH_SECONDS


async def run(
    kubeconfig: Path, namespace: str, scenarios: Sequence[Scenario], log: Callable[[str], None] = print
) -> dict[str, Recording]:
    """Create the scenarios' objects in ``namespace``, run their traces, return the recordings."""
    api = connect(kubeconfig)
    try:
        return await Run(api, namespace, scenarios, log).execute()
    finally:
        await api.close()
