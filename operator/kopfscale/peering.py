"""High availability with kopf's peering: exactly one replica acts, a standby takes over fast.

kopf pauses every operator that sees a live peer of a higher priority — and, to be safe, *all*
operators when two have the same one. The chart's replicas are started with identical arguments,
so a fixed priority would pause them all: :func:`random_priority` gives each process its own
(``kopfscale run`` does so unless ``--priority`` is given or ``--standalone`` is set). The highest
acts; the others stand by. A replica that stops cleanly withdraws its peering record at once; one
that dies (SIGKILL, node loss) or is cut off from the API server stops renewing it, and it expires
after :data:`PEERING_LIFETIME` seconds, when the next-highest resumes (kopf renews every
lifetime - 5...10 s, at least every second). So a takeover takes at most about ``PEERING_LIFETIME``
seconds instead of kopf's default 60.

Also here: kopf's peering objects and namespace scanning, below.

Make sure kopf's cluster-wide peering object exists before the operator relies on it.

kopf's peering (``--peering NAME``) keeps a second replica on standby, but only when the
``ClusterKopfPeering`` named NAME exists: kopf patches it and never creates it. The Helm chart
renders it (Helm installs the CRDs first), but a single ``kubectl apply -f crds/ -f
deploy/kubernetes/`` cannot create an object in the same call as its CRD, so the operator creates
it at startup when it is missing. Namespaced peering objects (``KopfPeering``) are always in the
manifests: the namespaced install needs the CRDs to exist beforehand anyway.

Also for namespaced installs: ``KOPFSCALE_KOPF_SCANNING=off`` (``settings.kopf_scanning``, applied
by ``app.wire``) turns off kopf's
cluster-level scanning (listing/watching Namespaces to follow namespace globs, and CRDs to notice
new resources). A Role cannot grant either, and kopf would retry the 403s with backoff for most
of a minute before starting; with exact namespaces (the chart's ``watchNamespaces``, or the
Pod's own namespace) there is nothing to scan for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import getpass
import logging
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kopf

from kopfscale.kube.errors import ApiError
from kopfscale.kube.transport import path, transport

#: kopf's own peering resource (not ours: kopfscale's identity is in ``kopfscale/__init__``).
KOPF_PEERING_GROUP, KOPF_PEERING_VERSION, KOPF_CLUSTER_PEERINGS = "kopf.dev", "v1", "clusterkopfpeerings"
#: Seconds a replica's peering record lives without renewal: the takeover bound after a crash.
PEERING_LIFETIME = 10


def random_priority() -> int:
    """A priority no other replica has (63 random bits: a collision is never seen in practice)."""
    return 1 + secrets.randbelow(2**62)


def ensure_cluster_peering(name: str, logger: logging.Logger | logging.LoggerAdapter[Any]) -> bool:
    """Create the ClusterKopfPeering ``name`` unless it exists; True if it was created."""
    body = {
        "apiVersion": f"{KOPF_PEERING_GROUP}/{KOPF_PEERING_VERSION}",
        "kind": "ClusterKopfPeering",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "kopfscale"}},
    }
    try:
        transport().create(path(KOPF_PEERING_GROUP, KOPF_PEERING_VERSION, KOPF_CLUSTER_PEERINGS), body)
    except ApiError as e:
        if e.status == 409:
            return False
        if e.status == 404:
            logger.warning(
                "kopf's peering CRDs are not installed (kubectl apply -f deploy/crds/): "
                "the operator waits until they are."
            )
            return False
        if e.status == 403:
            logger.warning(
                f"Not allowed to create the ClusterKopfPeering {name!r}; create it, "
                f"or grant 'create' on clusterkopfpeerings.kopf.dev: {e.message}"
            )
            return False
        raise
    logger.info(f"Created the ClusterKopfPeering {name!r} for kopf peering.")
    return True


@kopf.on.startup()
async def ensure_peering_object(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    peering = settings.peering
    peering.lifetime = PEERING_LIFETIME
    if peering.standalone or not peering.mandatory or not peering.clusterwide:
        return
    await asyncio.to_thread(ensure_cluster_peering, peering.name, logger)


# --- the gate: what kopf's pause means for the work kopf does not run itself -------------------------
#
# kopf pauses its own watches and handlers while a peer outranks this replica, but it has no public
# hook to tell anything else. The ScaledApp scheduler (:mod:`kopfscale.scheduler`) is
# such a thing: one queue for every ScaledApp's rounds instead of one kopf daemon per object (whose
# memory and finalizer it removes). So the gate reads the same peering object kopf reads and applies
# kopf's own documented rule to it: a replica acts while no live peer has a priority as high as its
# own. Both decide from the same records, so they pause and resume together (within a poll).

IDENTITY_ENV = "POD_ID"  # kopf names a replica in the peering object by this variable when it is set
#: Seconds between two reads of the peering object (only when peering is on; one GET each).
GATE_INTERVAL = 1.0


def own_identity() -> str:
    """This replica's name in the peering object: ``$POD_ID`` (the chart sets the Pod's name), else
    one made up now and put into ``$POD_ID`` — before kopf starts, so kopf uses the very same."""
    identity = os.environ.get(IDENTITY_ENV)
    if not identity:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d%H%M%S")
        identity = f"{getpass.getuser()}@{socket.gethostname()}/{stamp}/{secrets.token_hex(3)}"
        os.environ[IDENTITY_ENV] = identity
    return identity


@dataclass(frozen=True)
class Verdict:
    active: bool
    why: str


def _deadline(info: Mapping[str, Any]) -> datetime.datetime | None:
    try:
        seen = datetime.datetime.fromisoformat(str(info["lastseen"]))
        lifetime = float(info.get("lifetime", 60))
    except (KeyError, TypeError, ValueError):
        return None
    if seen.tzinfo is None:
        seen = seen.replace(tzinfo=datetime.UTC)
    return seen + datetime.timedelta(seconds=lifetime)


def decide(
    objects: Mapping[str, Mapping[str, Any] | None],
    *,
    identity: str,
    priority: int,
    mandatory: bool,
    now: datetime.datetime,
) -> Verdict:
    """Whether this replica acts, by kopf's rule, given its peering objects (by where they are;
    None: absent). Paused while any live peer other than us has a priority >= ours (an equal one
    pauses both, as kopf does); while a mandatory peering object is missing (kopf waits for it)."""
    for where, body in objects.items():
        if body is None:
            if mandatory:
                return Verdict(False, f"the peering object {where} does not exist")
            continue
        for peer, info in (body.get("status") or {}).items():
            if peer == identity or not isinstance(info, Mapping):
                continue
            deadline = _deadline(info)
            if deadline is None or deadline <= now:
                continue  # dead (or unreadable): kopf ignores it too
            theirs = int(info.get("priority") or 0)
            if theirs >= priority:
                how = "the same priority" if theirs == priority else f"priority {theirs} > {priority}"
                return Verdict(False, f"peer {peer} in {where} has {how}")
    return Verdict(True, "no live peer outranks this replica")


class Gate:
    """Open while this replica is the one that acts. Standalone operators are always open."""

    def __init__(self, *, open_: bool = False) -> None:
        self._open = asyncio.Event()
        self._closed = asyncio.Event()
        (self._open if open_ else self._closed).set()
        self.why = "standalone" if open_ else "the peering object has not been read yet"

    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait_open(self) -> None:
        await self._open.wait()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def set(self, verdict: Verdict) -> bool:
        """Apply a verdict; True when it opened or closed the gate."""
        self.why = verdict.why
        if verdict.active == self.is_open():
            return False
        (self._open if verdict.active else self._closed).set()
        (self._closed if verdict.active else self._open).clear()
        return True


def peering_paths(settings: kopf.OperatorSettings, namespaces: Sequence[str]) -> list[str]:
    """Where kopf keeps this operator's peering records: one ClusterKopfPeering, or a KopfPeering per
    watched namespace (exact names only: kopf resolves globs by scanning, which this does not)."""
    name = settings.peering.name
    if settings.peering.clusterwide:
        return [path(KOPF_PEERING_GROUP, KOPF_PEERING_VERSION, KOPF_CLUSTER_PEERINGS, None, name)]
    exact = [ns for ns in namespaces if not any(c in ns for c in "*?[!")]
    return [path(KOPF_PEERING_GROUP, KOPF_PEERING_VERSION, "kopfpeerings", ns, name) for ns in exact]


_gate_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kopfscale-peering")


async def follow(
    gate: Gate,
    settings: kopf.OperatorSettings,
    namespaces: Sequence[str],
    logger: logging.Logger | logging.LoggerAdapter[Any],
    interval: float = GATE_INTERVAL,
) -> None:
    """Keep ``gate`` in step with kopf's peering decision until cancelled.

    The reads run on a thread of their own, so a backlog of autoscaling rounds never delays a
    takeover. When the peering objects cannot be read for longer than our record's lifetime, the
    gate closes: the record has expired for the others by then, and one of them may be acting.
    """
    identity, priority = own_identity(), int(settings.peering.priority)
    where = peering_paths(settings, namespaces)
    clock = asyncio.get_running_loop()
    last_read = clock.time()

    def read() -> dict[str, Mapping[str, Any] | None]:
        return {p: transport().get(p, timeout=min(5.0, interval * 4)) for p in where}

    while True:
        try:
            objects = await clock.run_in_executor(_gate_thread, read)
            last_read = clock.time()
            verdict = decide(
                objects,
                identity=identity,
                priority=priority,
                mandatory=settings.peering.mandatory,
                now=datetime.datetime.now(datetime.UTC),
            )
        except ApiError as e:
            verdict = Verdict(gate.is_open(), gate.why)
            if clock.time() - last_read > settings.peering.lifetime:
                verdict = Verdict(False, f"the peering objects cannot be read: {e}")
        if gate.set(verdict):
            state = "acting" if verdict.active else "standing by"
            logger.info(f"Autoscaling rounds: {state} ({verdict.why}).")
        await asyncio.sleep(interval)
