"""The one status writer: a JSON merge patch of only what changed, or no request at all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kopfscale.kube.transport import Transport


def merge_patch_between(previous: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch from ``previous`` to ``new`` (objects merged, lists replaced, None deletes)."""
    patch: dict[str, Any] = {}
    for key in previous.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        old = previous.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            sub = merge_patch_between(old, value)
            if sub:
                patch[key] = sub
        elif value != old:
            patch[key] = value
    return patch


def status_patch(
    previous: Mapping[str, Any], new: Mapping[str, Any], resource_version: str | None = None
) -> dict[str, Any]:
    """The ``/status`` patch from ``previous`` to ``new``; empty ``status`` when nothing changed.

    With ``resource_version`` the write is conditional (409 if the object moved since it was read).
    """
    patch: dict[str, Any] = {"status": merge_patch_between(previous, new)}
    if resource_version is not None:
        patch["metadata"] = {"resourceVersion": resource_version}
    return patch


def patch_status(transport: Transport, resource_path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
    """Send a :func:`status_patch` to the object's ``/status`` subresource."""
    return transport.merge_patch(resource_path + "/status", patch)
