"""The composition root: the controllers, what they share, and kopf's settings, wired in one place.

``kopfscale run`` and ``kopf run -m kopfscale.app`` both load this module, so what is below
applies however the operator is started (CLI, tests with KopfRunner, the container):

- the Greeter and ScaledApp controllers register their handlers when imported (kopf's way);
- at startup, :func:`wire` reads the operator's settings once and builds the one API transport
  and each controller's API on it, and hands each controller its ``Wiring`` through kopf's
  ``memo`` (every handler is given the memo);
- :func:`configure` sets kopf's own settings (storage, events, watches, workers, retries).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
from typing import Any

import kopf

from kopfscale import GROUP, kube, peering
from kopfscale import crdwait as _crdwait  # noqa: F401  (first startup handler: CRDs Established)
from kopfscale import liveness as _liveness  # noqa: F401  (/healthz: the API server answers)
from kopfscale import metrics as operator_metrics  # /metrics endpoint + handler timing
from kopfscale import settings as operator_settings
from kopfscale.diffbase import NoDiffBase
from kopfscale.greeter import handlers as greeter_handlers  # registers the Greeter handlers
from kopfscale.greeter.passes import Passes
from kopfscale.greeter.reconcile import KubeApi as GreeterApi
from kopfscale.kube.ownership import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from kopfscale.scaledapp import handlers as scaledapp_handlers  # registers the ScaledApp handlers
from kopfscale.scaledapp import rounds as scaledapp_rounds
from kopfscale.scaledapp import sources
from kopfscale.scaledapp.api import KubeApi as ScaledAppApi
from kopfscale.scaledapp.rounds import Rounds
from kopfscale.scheduler import Scheduler
from kopfscale.simulate import flaps

# This replica's name in kopf's peering object, fixed before kopf starts (kopf reads $POD_ID), so that
# the autoscaling rounds' gate knows which record is its own (see peering.own_identity).
peering.own_identity()
_TASKS_MEMO_KEY = "kopfscale_background_tasks"


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
async def wire(memo: kopf.Memo, settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    """The operator's settings read once; one transport and each controller's API on it, given to
    every handler; the metric sources opened with the settings; kopf's scanning as they say."""
    try:
        config = operator_settings.load()
    except operator_settings.SettingsError as e:
        raise kopf.PermanentError(str(e)) from None
    if not config.kopf_scanning:
        settings.scanning.disabled = True
        logger.info("kopf's namespace and CRD scanning is off: watching the given namespaces only.")
    transport = kube.transport()
    # Each controller's passes or rounds run in a scheduler of its own (the same kind): a burst of
    # Greeters never delays a ScaledApp's round. Both follow one peering gate.
    gate = peering.Gate(open_=settings.peering.standalone)
    greeter_scheduler = Scheduler(gate=gate, logger=logger)
    greeter_passes = Passes(greeter_scheduler)
    greeter_scheduler.on_open = greeter_passes.wake_all
    memo[greeter_handlers.MEMO_KEY] = greeter_handlers.Wiring(
        api=GreeterApi(transport), settings=config, passes=greeter_passes
    )
    scaledapp_api = ScaledAppApi(transport)
    scheduler = Scheduler(workers=scaledapp_rounds.WORKERS, gate=gate, logger=logger)
    rounds = Rounds(scheduler, lister=scaledapp_api.list_scaledapps)
    scheduler.on_open = rounds.resync
    memo[scaledapp_handlers.MEMO_KEY] = scaledapp_handlers.Wiring(
        api=scaledapp_api, replay=flaps.replay_changes, rounds=rounds
    )
    await sources.open_all(config)
    await operator_metrics.start(memo, config.metrics_port, config.metrics_address)
    tasks = [
        asyncio.create_task(greeter_scheduler.run(), name="kopfscale Greeter passes"),
        asyncio.create_task(scheduler.run(), name="kopfscale autoscaling rounds"),
    ]
    if not settings.peering.standalone:
        follow = peering.follow(gate, settings, config.namespaces, logger)
        tasks.append(asyncio.create_task(follow, name="kopfscale peering gate"))
    memo[_TASKS_MEMO_KEY] = tasks


@kopf.on.cleanup()
async def unwire(memo: kopf.Memo, **_: Any) -> None:
    """What wire opened, closed: the rounds' scheduler and gate, the metric sources' clients."""
    tasks: list[asyncio.Task[None]] = memo.get(_TASKS_MEMO_KEY) or []
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await sources.close_all()


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Keep kopf's bookkeeping in our own annotations: status stays ours (the CRD schema prunes
    # unknown status fields) and nothing collides with another kopf operator on the same object.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    # Both controllers are level-based (watch-event handlers and indexes, no change handlers), so
    # no "last handled" state is ever compared; kopf would still build one per watch event of every
    # watched object (a deep copy of the whole object) unless its storage says there is none.
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Events: users see what we did on `kubectl describe`; debug chatter stays in the log.
    settings.posting.level = logging.INFO
    # Events are signed by kopfscale (`kubectl get events` SOURCE column), not by the framework.
    settings.posting.reporting_component = "kopfscale"
    settings.posting.reporting_instance = socket.gethostname()
    # Watches are long-lived; a server-side timeout refreshes them without losing events. A watch
    # that goes silent (a half-open connection) is dropped and resumed by kopf's inactivity timeout
    # (70 s; the API server sends a bookmark every minute).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    # kopf's own requests (its annotations, events, handler results): a hung connection fails the
    # request in 30 s and kopf retries it, instead of holding the object for aiohttp's 5 minutes.
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    # Only what is ours is streamed: the API server filters the children's watches (every child
    # of ours carries the managed-by label), so other teams' Deployments and Services cost nothing.
    ours = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
    settings.watching.label_selectors["apps", "v1", "deployments"] = ours
    settings.watching.label_selectors["v1", "services"] = ours  # the core group's
    # Sync handlers run in this pool; it bounds concurrent API calls during bursts.
    settings.execution.max_workers = 32
    # kopf's request retries (API server down, 5xx, 429): the gaps stay at most 5 s, so an API
    # server back after a 20 s outage is used within seconds, not after a 30 s sleep; the total,
    # about two minutes, is how long a watch rides out an outage before kopf gives up and the
    # operator exits (the Pod restarts; the liveness probe fails long before).
    settings.networking.error_backoffs = [1, 1, 2, 2, 3, 3, *[5] * 22]
