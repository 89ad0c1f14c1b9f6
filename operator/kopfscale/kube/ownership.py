"""Who owns what: the label every child of ours carries, and controller owner references.

Owner references are written with kopf's own helper (``kopf.append_owner_reference``, a
controller reference that blocks the owner's deletion until garbage collection); this module
reads them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: On every object kopfscale creates; the chart's RBAC and users' selectors rely on it.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "kopfscale"
MANAGED_BY: Mapping[str, str] = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}


def controller_of(live: Mapping[str, Any]) -> Mapping[str, Any] | None:
    refs = (live.get("metadata") or {}).get("ownerReferences") or []
    return next((ref for ref in refs if ref.get("controller")), None)


def is_controlled_by(live: Mapping[str, Any], uid: str) -> bool:
    """Ours means: a controller owner reference to this very owner (by uid, not by name)."""
    refs = (live.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)


def describe_controller(live: Mapping[str, Any]) -> str:
    ref = controller_of(live)
    if ref is None:
        return "it has no controller"
    return f"it is controlled by {ref.get('kind')} {ref.get('name')} (uid {ref.get('uid')})"
