"""Liveness: the operator is alive when it can still talk to the API server the way it works.

kopf serves ``--liveness`` (``/healthz``) and, by itself, answers 200 as long as its event loop
runs — also when every connection to the API server hangs (a network partition that leaves
connections half-open), when kopf's watches and our requests cannot make progress. A process in
that state heals nothing by itself; a Kubernetes restart (new connections, new TLS sessions, a
fresh list of every watched resource) does. So one probe asks the API server for ``/version``
(readable by every authenticated client: no RBAC of its own) through the operator's own client
configuration and connection pool, with a short timeout, and fails the probe — HTTP 500 on
``/healthz`` — when no answer comes.

The probe runs on a thread of its own: a backlog in the I/O pool the controllers share must not
make a healthy operator look dead. kopf caches probe results for 10 s, so the API server sees at
most one request per 10 s from it. The kubelet restarts the Pod only after ``failureThreshold``
failed probes in a row (the chart: 3 probes 20 s apart), so a short API server outage does not restart it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from typing import Any

import kopf

from kopfscale.kube import ApiError, transport

#: Seconds the probe waits for the API server: well below the chart's probe timeoutSeconds (5 s).
PROBE_TIMEOUT = 4.0
_probe_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kopfscale-probe")


@kopf.on.probe(id="apiserver", errors=kopf.ErrorsMode.PERMANENT)
async def apiserver_reachable(**_: Any) -> str:
    """``/healthz``'s ``apiserver`` entry: the API server's version and the round trip, or a 500."""
    clock = asyncio.get_running_loop()
    started = clock.time()
    request = functools.partial(transport().request, "GET", "/version", timeout=PROBE_TIMEOUT)
    try:
        version = await clock.run_in_executor(_probe_thread, request)
    except ApiError as e:
        raise kopf.PermanentError(f"the API server does not answer: {e}") from None
    elapsed_ms = (clock.time() - started) * 1000
    return f"{version.get('gitVersion', 'unknown version')} in {elapsed_ms:.0f} ms"
