"""Wait at startup until kopfscale's CRDs are Established and served, instead of logging API errors.

Started right after ``kubectl apply -f crds/`` (``make run``, a fresh install), kopf's watches
would hit a resource the apiserver does not serve yet and log ``429 storage is
(re)initializing`` or 404 errors with backoff. kopf runs startup handlers before it starts any
watch, so one startup handler that waits turns that into one clear INFO line ("waiting for ...
to be installed/established/served"). ``Established`` alone is not enough: the apiserver's
storage (watch cache) for a new CRD answers 429 for a moment after it, so the wait ends with one
successful list of each resource, the request kopf's watches start with.

The CRDs are read with ``list`` and a name field selector: the chart's ClusterRole grants
``list, watch`` on CRDs (kopf's scanning needs those), not ``get``. A namespaced install (a Role,
no right to read CRDs) gets a 403; there the cluster admin installs the CRDs beforehand, so the
wait is skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from kopfscale import GROUP, kube
from kopfscale.kube import ApiError

#: The CRDs the operator's handlers watch.
CRDS = (f"greeters.{GROUP}", f"scaledapps.{GROUP}")
#: Seconds between polls, and between repeated "still waiting" lines.
POLL_SECONDS = 1.0
REPEAT_SECONDS = 30.0
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def is_established(crd: Mapping[str, Any]) -> bool:
    """True when the CRD's ``Established`` condition is ``True`` (the apiserver serves it)."""
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def pending(names: Iterable[str], found: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Each CRD not yet usable, with why: ``not installed`` or ``not established yet``."""
    result = {}
    for name in names:
        crd = found.get(name)
        if crd is None:
            result[name] = "not installed"
        elif not is_established(crd):
            result[name] = "not established yet"
    return result


def resource_of(crd: Mapping[str, Any]) -> tuple[str, str, str]:
    """(group, served storage version, plural) of a CRD."""
    spec = crd["spec"]
    versions = [v for v in spec["versions"] if v.get("served")]
    version = next((v for v in versions if v.get("storage")), versions[0])
    return str(spec["group"]), str(version["name"]), str(spec["names"]["plural"])


def unserved(found: Mapping[str, Mapping[str, Any]], transport: kube.Transport) -> dict[str, str]:
    """The CRDs whose resources cannot be listed yet, with why (blocking)."""
    result = {}
    for name, crd in found.items():
        group, version, plural = resource_of(crd)
        try:
            # A plain list, as kopf's first one: served by the same watch cache that answers 429.
            transport.request("GET", f"/apis/{group}/{version}/{plural}", timeout=30)
        except ApiError as e:
            if e.status in (401, 403):  # a namespaced install: nothing cluster-wide to list
                continue
            result[name] = f"not served yet ({e.status} {e.reason})"
    return result


def read_crds(names: Iterable[str], transport: kube.Transport) -> dict[str, dict[str, Any]]:
    """The named CRDs that exist (one list call per name, with a field selector; blocking)."""
    found: dict[str, dict[str, Any]] = {}
    for name in names:
        listed = transport.request("GET", CRD_PATH, query=[("fieldSelector", f"metadata.name={name}")])
        for item in listed.get("items") or []:
            found[name] = dict(item)
    return found


async def wait_for_crds(
    logger: kopf.Logger | Any, names: Iterable[str] = CRDS, poll: float = POLL_SECONDS
) -> bool:
    """Return once every CRD in ``names`` is Established: True after a check, False if skipped."""
    names = tuple(names)
    transport = kube.transport()
    last_said = 0.0
    last_text = ""
    while True:
        try:
            found = await asyncio.to_thread(read_crds, names, transport)
        except ApiError as e:
            if e.status in (401, 403):
                logger.info(
                    f"Not allowed to read CRDs ({e.status}); assuming {', '.join(names)} are installed."
                )
                return False
            text = f"Cannot read the CRDs yet ({e.status} {e.reason}); retrying."
        else:
            waiting = pending(names, found) or await asyncio.to_thread(unserved, found, transport)
            if not waiting:
                if last_said:
                    logger.info(f"The CRDs are established and served: {', '.join(names)}.")
                return True
            text = "Waiting for the CRDs: " + "; ".join(f"{n} {why}" for n, why in waiting.items())
            if "not installed" in text:
                text += " (install them: kubectl apply --server-side -f crds/)"
        now = time.monotonic()
        if text != last_text or now - last_said >= REPEAT_SECONDS:
            logger.info(text)
            last_said, last_text = now, text
        await asyncio.sleep(poll)


@kopf.on.startup()
async def wait_for_established_crds(logger: kopf.Logger, **_: Any) -> None:
    await wait_for_crds(logger)
