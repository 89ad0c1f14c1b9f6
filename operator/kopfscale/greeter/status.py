"""A Greeter's ``status``, computed from the Greeter and its live children.

Pure and level-based: the same inputs give the same status, whoever calls it (the Greeter's
handlers or the children's drift handlers), so status can be recomputed on any event and
written only when it actually changed.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kopfscale import conditions
from kopfscale.greeter import manifests
from kopfscale.kube.health import deployment_problem
from kopfscale.settings import OperatorSettings

READY = "Ready"
RECONCILED = "Reconciled"


@dataclass(frozen=True)
class Failure:
    """Why the last reconciliation failed: a CamelCase reason and a message for people."""

    reason: str
    message: str


def _children_differences(
    desired: manifests.Desired,
    deployment: Mapping[str, Any] | None,
    service: Mapping[str, Any] | None,
) -> list[str]:
    found: list[str] = []
    for kind, wanted, live in (
        ("Deployment", desired.deployment, deployment),
        ("Service", desired.service, service),
    ):
        if live is None:
            found.append(f"{kind} missing")
        else:
            found.extend(f"{kind} {path}" for path in manifests.child_differences(wanted, live))
    return found


def _rollout(desired: int, deployment: Mapping[str, Any]) -> tuple[bool, str, str]:
    """Whether every desired replica runs the current template and is ready."""
    meta = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    seen = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    counts = f"{ready}/{desired} replicas ready"
    if not seen or updated < desired or total > desired:
        return False, "RollingOut", f"the Deployment is rolling out ({counts}, {updated} up to date)"
    if ready < desired:
        return False, "ReplicasNotReady", counts
    return True, "AllReplicasReady", counts


def compute_status(
    greeter: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    service: Mapping[str, Any] | None,
    settings: OperatorSettings,
    *,
    failure: Failure | None = None,
    now: datetime.datetime | None = None,
    desired: manifests.Desired | None = None,
) -> dict[str, Any]:
    """The status the Greeter should have; ``desired`` is :func:`manifests.desired_for` of it
    (computed here when the caller has not already)."""
    meta = greeter["metadata"]
    generation = meta.get("generation")
    previous = greeter.get("status") or {}
    desired = desired or manifests.desired_for(greeter, settings)
    spec = desired.spec
    diffs = _children_differences(desired, deployment, service)
    in_sync = not diffs and failure is None

    if failure is not None:
        reconciled = (False, failure.reason, failure.message)
        ready = (False, failure.reason, failure.message)
    elif diffs:
        detail = f"children differ from the spec: {manifests.describe_differences(diffs)}"
        reconciled = (False, "Reconciling", detail)
        ready = (False, "Reconciling", detail)
    else:
        assert deployment is not None
        reconciled = (True, "ChildrenMatchSpec", "the Deployment and the Service match the spec")
        problem = deployment_problem(deployment)  # e.g. its Pods refused by admission or a quota
        ready = (
            (False, problem[0], f"Deployment: {problem[1]}")
            if problem
            else _rollout(spec.replicas, deployment)
        )

    updates = [
        conditions.make_condition(
            RECONCILED, reconciled[0], reconciled[1], reconciled[2], observed_generation=generation, now=now
        ),
        conditions.make_condition(
            READY, ready[0], ready[1], ready[2], observed_generation=generation, now=now
        ),
    ]
    deployment_status = (deployment or {}).get("status") or {}
    status: dict[str, Any] = {
        "replicas": int(deployment_status.get("replicas") or 0),
        "readyReplicas": int(deployment_status.get("readyReplicas") or 0),
        "selector": manifests.selector_string(meta["name"]),
        "url": manifests.service_url(meta["name"], meta["namespace"], spec.port, settings.cluster_domain),
        "conditions": conditions.merge_conditions(previous.get("conditions"), updates),
    }
    observed = generation if in_sync else previous.get("observedGeneration")
    if observed is not None:
        status["observedGeneration"] = observed
    return status


def ready_of(status: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The Ready condition of a Greeter status, if any."""
    return conditions.find_condition((status or {}).get("conditions"), READY)


def status_changed(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether writing ``new`` would tell anything new (transition times alone do not count)."""
    previous = previous or {}
    keys = (set(previous) | set(new)) - {"conditions"}
    if any(previous.get(k) != new.get(k) for k in keys):
        return True
    return not conditions.conditions_equal_ignoring_time(previous.get("conditions"), new.get("conditions"))


def is_ready(status: Mapping[str, Any] | None) -> bool:
    condition = conditions.find_condition((status or {}).get("conditions"), READY)
    return bool(condition and condition.get("status") == "True")
