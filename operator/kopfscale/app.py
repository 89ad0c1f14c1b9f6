"""The operator: every kopf handler kopfscale registers, plus its kopf settings.

``kopfscale run`` and ``kopf run -m kopfscale.app`` both load this module, so the settings
below apply however the operator is started (CLI, tests with KopfRunner, the container).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
from typing import Any

import kopf

from kopfscale import GROUP
from kopfscale import crdwait as _crdwait  # noqa: F401  (first startup handler: CRDs Established)
from kopfscale import metrics as _metrics  # noqa: F401  (/metrics endpoint + handler timing)
from kopfscale import peering as _peering  # noqa: F401  (creates kopf's peering object if missing)
from kopfscale.greeter import handlers as _greeter_handlers  # noqa: F401  (registers handlers)
from kopfscale.scaledapp import handlers as _scaledapp_handlers  # noqa: F401  (registers handlers)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster ServiceAccount first, else the kubeconfig named by $KUBECONFIG *now*.

    kopf's default piggybacks on client libraries, and the official client freezes $KUBECONFIG
    at import time; kopf's own readers look it up when called, so a kubeconfig set later (by
    tests, or by `make run` for the local control plane) is honoured without a noisy failure.
    """
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


#: Threads for the autoscaling loops' blocking API calls (``asyncio.to_thread``). The default
#: pool has cpu+4 threads, which queued a thousand loops' calls behind each other.
IO_THREADS = 32


@kopf.on.startup()
async def widen_thread_pool(**_: Any) -> None:
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="kopfscale-io")
    )


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Keep kopf's bookkeeping in our own annotations: status stays ours (the CRD schema prunes
    # unknown status fields) and nothing collides with another kopf operator on the same object.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Events: users see what we did on `kubectl describe`; debug chatter stays in the log.
    settings.posting.level = logging.INFO
    # Events are signed by kopfscale (`kubectl get events` SOURCE column), not by the framework.
    settings.posting.reporting_component = "kopfscale"
    settings.posting.reporting_instance = socket.gethostname()
    # Watches are long-lived; a server-side timeout refreshes them without losing events.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Sync handlers run in this pool; it bounds concurrent API calls during bursts.
    settings.execution.max_workers = 32
    # Retries: errors are retried with growing backoff instead of crash-looping.
    settings.networking.error_backoffs = [1, 2, 5, 10, 30]
