"""What a Deployment's own conditions say is wrong with it. Pure; both controllers report it.

A Deployment can look scaled (``spec.replicas: 2``) while no Pod exists: the ReplicaSet cannot
create them (Pod Security admission, a quota, a missing ServiceAccount) and says so only in the
Deployment's conditions. Owners show it as ``Ready=False`` with the Deployment's own reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def deployment_problem(deployment: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(reason, message) of a failing Deployment — ``ReplicaFailure=True`` or ``Progressing=False`` —
    or None when its conditions report nothing wrong."""
    if not deployment:
        return None
    conditions = {c.get("type"): c for c in (deployment.get("status") or {}).get("conditions") or []}
    failure = conditions.get("ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return str(failure.get("reason") or "ReplicaFailure"), str(failure.get("message") or "")
    progressing = conditions.get("Progressing")
    if progressing is not None and progressing.get("status") == "False":
        return str(progressing.get("reason") or "ProgressDeadlineExceeded"), str(
            progressing.get("message") or ""
        )
    return None
