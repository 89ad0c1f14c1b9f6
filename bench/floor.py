"""The floors kopfscale is measured against: kopf alone, with kopfscale's watches, indexes and settings.

Two modes (``KOPFSCALE_FLOOR_MODE``):

* ``floor`` (default), the **footprint floor**: kopf watches exactly what kopfscale watches and
  does nothing with it. What the floor contains, taken at run time from kopfscale's own kopf
  registry and ``configure`` (bench/mirror.py writes them to the file ``KOPFSCALE_FLOOR_MIRROR``
  names; without it, the list below, as kopfscale had it when this was written):

  - one watch per resource kopfscale has any handler for (Greeters, ScaledApps, Deployments,
    Services, HorizontalPodAutoscalers), each event dispatched to a no-op ``on.event`` handler;
  - the same server-side label selectors (``settings.watching.label_selectors``): only the
    Deployments and Services labelled ``app.kubernetes.io/managed-by=kopfscale`` are streamed;
  - one kopf index per kopfscale index, on the same resource with the same label filter, each
    holding ``(namespace, name) -> None`` per object: kopf's index bookkeeping without
    kopfscale's payload (what kopfscale stores in its indexes is kopfscale's own state);
  - kopfscale's kopf settings (:func:`configure` copies them; the bench compares the two and
    prints any difference);
  - kopfscale's login handler (kopf's own kubeconfig reader: kopf's default login would import
    the official client, which kopfscale imports for its own work);
  - no change handlers, daemons or timers (those are kopfscale's work, not kopf's cost of
    watching), no metrics endpoint, no kopfscale imports.

* ``minimal``, the **CPU floor of a burst**: the floor plus one ``on.create`` handler for Greeters
  that POSTs the same Deployment and Service kopfscale would (kopfscale's pure manifest
  functions build them) through kopf's own async API client, then lets kopf record the handler
  as done (its annotation PATCH). No status, no events (kopf's event posting is off in this
  mode: its "Handler succeeded" events are not the minimum), no drift handling.

    KOPFSCALE_FLOOR_MODE=minimal kopf run --all-namespaces --standalone bench/floor.py
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import kopf

from kopfscale.diffbase import NoDiffBase

GROUP = "kopfscale.dev"
MIRROR_ENV = "KOPFSCALE_FLOOR_MIRROR"
MODE_ENV = "KOPFSCALE_FLOOR_MODE"
OURS = "app.kubernetes.io/managed-by=kopfscale"

#: kopfscale's watches, indexes and label selectors at a1ac62f; bench/mirror.py supersedes them.
DEFAULT_MIRROR: dict[str, Any] = {
    "watches": [
        ["", "v1", "services"],
        ["apps", "v1", "deployments"],
        ["autoscaling", "v2", "horizontalpodautoscalers"],
        [GROUP, "v1", "greeters"],
        [GROUP, "v1", "scaledapps"],
    ],
    "indexes": [
        [GROUP, "v1", "greeters", {}],
        ["apps", "v1", "deployments", {"app.kubernetes.io/managed-by": "kopfscale"}],
        ["", "v1", "services", {"app.kubernetes.io/managed-by": "kopfscale"}],
        [GROUP, "v1", "scaledapps", {}],
        ["autoscaling", "v2", "horizontalpodautoscalers", {}],
        ["apps", "v1", "deployments", {"kopfscale.dev/scaledapp": {"present": True}}],
    ],
    "label_selectors": [["apps", "v1", "deployments", OURS], ["", "v1", "services", OURS]],
    "max_workers": 32,
}


def load_mirror() -> dict[str, Any]:
    path = os.environ.get(MIRROR_ENV)
    return json.loads(Path(path).read_text()) if path else DEFAULT_MIRROR


MIRROR = load_mirror()
MODE = os.environ.get(MODE_ENV, "floor")
_state: dict[str, Any] = {}  # the minimal mode's settings and operator config, set at startup


def configure(settings: kopf.OperatorSettings, mirror: dict[str, Any]) -> None:
    """kopfscale's kopf settings (operator/kopfscale/app.py ``configure``): its storages copied here,
    and every plain value (timeouts, backoffs, posting, workers) and the label selectors taken from
    the mirror, so they follow kopfscale's without an edit here."""
    import logging
    import socket

    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()  # kopfscale's: no diff base is built
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "kopfscale"
    settings.posting.reporting_instance = socket.gethostname()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.networking.error_backoffs = [1, 1, 2, 2, 3, 3, *[5] * 22]
    for group, version, plural, selector in mirror["label_selectors"]:
        settings.watching.label_selectors[group, version, plural] = selector
    if mirror.get("max_workers"):
        settings.execution.max_workers = int(mirror["max_workers"])
    for key, value in (mirror.get("settings") or {}).items():  # every plain value, as kopfscale has it
        section, name = key.split(".", 1)
        part = getattr(settings, section, None)
        if part is not None and hasattr(part, name) and name != "max_workers":
            setattr(part, name, value)


def labels_filter(encoded: dict[str, Any]) -> dict[str, Any]:
    """The mirror's JSON label filter as kopf's (``{"present": true}`` is ``kopf.PRESENT``)."""
    out: dict[str, Any] = {}
    for key, value in encoded.items():
        if isinstance(value, dict):
            out[key] = kopf.PRESENT if value.get("present") else kopf.ABSENT
        else:
            out[key] = value
    return out


def seen(**_: Any) -> None:
    """Every event is received and dispatched, as kopfscale's are; nothing else happens."""


def indexed(namespace: str | None, name: str, **_: Any) -> dict[tuple[str | None, str], None]:
    return {(namespace, name): None}


async def create_children(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """The minimal operator's one handler: POST the Greeter's Deployment and Service."""
    from kopf._cogs.clients import api  # kopf's own client: no second HTTP stack
    from kopf._cogs.clients.errors import APIConflictError

    from kopfscale.greeter import manifests, reconcile

    namespace = body.meta["namespace"]
    children = reconcile.desired_children(body, _state["config"])
    for kind, url in (
        ("Deployment", f"/apis/apps/v1/namespaces/{namespace}/deployments"),
        ("Service", f"/api/v1/namespaces/{namespace}/services"),
    ):
        with contextlib.suppress(APIConflictError):  # created by an earlier attempt
            await api.post(
                url=url,
                payload=manifests.prune_nones(children[kind]),
                settings=_state["settings"],
                logger=logger,
            )


def register(mirror: dict[str, Any], mode: str) -> None:
    """The floor's handlers on kopf's default registry (ids say which kopfscale handler each mirrors)."""

    @kopf.on.login()
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        """kopfscale's login (kopf's own readers); kopf's default would import the official client."""
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup()
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, mirror)
        if mode == "minimal":
            settings.posting.enabled = False  # kopf's "Handler succeeded" events: not the minimum
            # Its create handler needs kopf's diff base (kopfscale, with no change handler, keeps none).
            settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
                prefix=GROUP, key="last-handled-configuration"
            )
            from kopfscale import settings as kopfscale_settings
            from kopfscale.greeter import reconcile  # noqa: F401  (imported now, not in the burst)

            _state["settings"], _state["config"] = settings, kopfscale_settings.load()

    for group, version, plural in mirror["watches"]:
        kopf.on.event(group, version, plural, id=f"floor-event-{plural}")(seen)
    for i, (group, version, plural, labels) in enumerate(mirror["indexes"]):
        kopf.index(group, version, plural, labels=labels_filter(labels) or None, id=f"floor_index_{i}")(
            indexed
        )
    if mode == "minimal":
        kopf.on.create(GROUP, "v1", "greeters", id="minimal-create-children")(create_children)


if __name__.startswith("__kopf_script_"):  # `kopf run bench/floor.py`; an import registers nothing
    register(MIRROR, MODE)
