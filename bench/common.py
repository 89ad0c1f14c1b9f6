"""Shared helpers of the benchmarks: process accounting from /proc, statistics, an async API client.

The benchmark driver talks to the apiserver directly (admin client certificate); only the process
under test (kopfscale or the baseline) goes through the counting proxy, so every request the proxy
counts is one the operator made.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import math
import os
import signal
import socket
import ssl
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent
GROUP, VERSION = "kopfscale.dev", "v1"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


# --- processes ----------------------------------------------------------------------------------------
def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL it when the benchmark dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: list[str], log: Path, env: dict[str, str] | None = None, stdin: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``argv`` logging to ``log``; ``stdin=True`` gives it a pipe (the raw clients take
    their "go" from it)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=REPO,
            preexec_fn=_die_with_parent,  # noqa: PLW1509  (prctl only, before exec)
        )


def stop(popen: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if popen.stdin is not None:
        with contextlib.suppress(OSError):
            popen.stdin.close()
    if popen.poll() is None:
        popen.send_signal(signal.SIGINT)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14 and 15)


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    return _status_kib(pid, "VmHWM") / 1024


def reset_peak_rss(pid: int) -> None:
    """Start a new peak-RSS period (Linux: writing 5 to clear_refs resets VmHWM)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


# --- statistics ---------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Stat:
    """One figure over several runs: the median, with the min and max beside it."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        clean = [v for v in values if not math.isnan(v)]
        if not clean:
            return cls(math.nan, math.nan, math.nan, len(values))
        return cls(statistics.median(clean), min(clean), max(clean), len(values))

    def to_json(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": self.runs}

    def fmt(self, digits: int = 0, scale: float = 1.0) -> str:
        if math.isnan(self.median):
            return "n/a"

        def f(v: float) -> str:
            return f"{v * scale:.{digits}f}"

        if self.runs <= 1 or self.low == self.high:
            return f(self.median) + (" (1 run)" if self.runs <= 1 else "")
        return f"{f(self.median)} ({f(self.low)}-{f(self.high)})"


# --- the driver's API client --------------------------------------------------------------------------
class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text[:300]}")
        self.status = status


def custom_path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
    base = f"/apis/{GROUP}/{VERSION}"
    base += f"/namespaces/{namespace}/{plural}" if namespace else f"/{plural}"
    return f"{base}/{name}" if name else base


def core_path(kind: str, namespace: str, name: str | None = None) -> str:
    prefix = "/apis/apps/v1" if kind == "deployments" else "/api/v1"
    base = f"{prefix}/namespaces/{namespace}/{kind}"
    return f"{base}/{name}" if name else base


class Api:
    """A small async client for the driver: admin credentials, straight to the apiserver."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext, concurrency: int = 48) -> None:
        self.server = server
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context, limit=concurrency + 16),
            read_bufsize=2**20,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        self.writes = asyncio.Semaphore(concurrency)

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        seconds: float = 60,
    ) -> Any:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        data = json.dumps(body) if body is not None else None
        async with (
            self.writes,
            self.session.request(
                method,
                self.server + path,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as resp,
        ):
            text = await resp.text()
            if resp.status >= 300:
                raise ApiError(resp.status, text)
            return json.loads(text) if text else None

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def create(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, body: Any) -> Any:
        return await self.request("PATCH", path, body, "application/merge-patch+json")

    async def ensure_namespace(self, name: str) -> None:
        with contextlib.suppress(ApiError):
            await self.create("/api/v1/namespaces", {"metadata": {"name": name}})

    async def delete_namespace(self, name: str, wait: float = 0.0, paths: tuple[str, ...] = ()) -> bool:
        """Delete the namespace; with ``wait``, until it is gone, or, when ``paths`` are given, until
        those collections in it are empty (Pods then terminate in the background); True if so.

        The owners (``paths[0]``) are deleted first, one by one (GC takes their children): the
        namespace controller is slow to start, and one DELETE of a large collection can outlast the
        apiserver's request timeout."""
        failures = (ApiError, TimeoutError, aiohttp.ClientError)

        async def delete(path: str) -> None:
            with contextlib.suppress(*failures):
                await self.request("DELETE", path)

        if paths:
            with contextlib.suppress(*failures):
                owners, _ = await self.list(paths[0])
                await asyncio.gather(*(delete(f"{paths[0]}/{o['metadata']['name']}") for o in owners))
        await delete(f"/api/v1/namespaces/{name}")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if paths:
                    if not any([(await self.get(p + "?limit=1")).get("items") for p in paths]):
                        return True
                else:
                    await self.get(f"/api/v1/namespaces/{name}")
            except ApiError as e:
                if e.status == 404:
                    return True
            except (TimeoutError, aiohttp.ClientError):
                pass
            await asyncio.sleep(0.5)
        return wait <= 0

    async def list(self, path: str, limit: int = 500) -> tuple[list[dict[str, Any]], str]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            sep = "&" if "?" in path else "?"
            page = await self.get(f"{path}{sep}limit={limit}" + (f"&continue={token}" if token else ""))
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items, page["metadata"]["resourceVersion"]

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(type, object) of every event from ``resource_version`` on, reconnecting as needed."""
        rv = resource_version
        while True:
            sep = "&" if "?" in path else "?"
            url = f"{self.server}{path}{sep}watch=1&resourceVersion={rv}&timeoutSeconds=600"
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
                if resp.status != 200:
                    raise ApiError(resp.status, await resp.text())
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        raise ApiError(int(obj.get("code") or 500), str(obj.get("message")))
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    yield event["type"], obj


class Recorder:
    """Watches one collection (driver side) and calls ``on_event(type, obj, monotonic time)``."""

    def __init__(self, api: Api, path: str, on_event: Callable[[str, dict[str, Any], float], None]) -> None:
        self.api = api
        self.path = path
        self.on_event = on_event
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        items, rv = await self.api.list(self.path)
        now = time.monotonic()
        for item in items:
            self.on_event("LISTED", item, now)
        self.task = asyncio.create_task(self._run(rv))

    async def _run(self, rv: str) -> None:
        async for kind, obj in self.api.watch(self.path, rv):
            self.on_event(kind, obj, time.monotonic())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task


def condition(obj: dict[str, Any], kind: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return str(c.get("status"))
    return None


async def serve_on_loopback(runner: web.AppRunner, port: int, port_file: Path) -> None:
    """Serve on 127.0.0.1 (port 0: any free one), write the bound port to ``port_file`` for the
    parent process to read, and run until cancelled."""
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await asyncio.to_thread(port_file.write_text, str(bound))
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


class Recorders:
    """A scenario's watches of the cluster (``self.recorders``), started and stopped together."""

    recorders: list[Recorder]

    async def start(self) -> None:
        for r in self.recorders:
            await r.start()

    async def stop(self) -> None:
        for r in self.recorders:
            await r.stop()
