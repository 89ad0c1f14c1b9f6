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
import logging
import secrets
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
