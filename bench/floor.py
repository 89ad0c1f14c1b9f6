"""The floor of the footprint benchmark: a minimal kopf operator with kopfscale's watches.

It watches what kopfscale watches — Greeters and ScaledApps with kopf's annotation storage, and
the Deployments and Services labelled ``app.kubernetes.io/managed-by=kopfscale``, filtered by the
API server the same way — and does nothing with them. Whatever kopfscale costs beyond this
process, on the same objects, is kopfscale's own state; what this process costs is kopf's.

    kopf run --all-namespaces --standalone bench/floor.py
"""

from __future__ import annotations

from typing import Any

import kopf

GROUP = "kopfscale.dev"
OURS = "app.kubernetes.io/managed-by=kopfscale"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.enabled = False
    settings.watching.label_selectors["apps", "v1", "deployments"] = OURS
    settings.watching.label_selectors["v1", "services"] = OURS


@kopf.on.event(GROUP, "v1", "greeters")
@kopf.on.event(GROUP, "v1", "scaledapps")
@kopf.on.event("apps", "v1", "deployments")
@kopf.on.event("", "v1", "services")
def seen(**_: Any) -> None:
    """Every event is received and dispatched, as kopfscale's are; nothing else happens."""
