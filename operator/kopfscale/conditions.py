"""Status conditions in the ``metav1.Condition`` shape, shared by every kopfscale resource.

Kept pure (the clock is a parameter) so that the one rule users rely on is unit-tested:
``lastTransitionTime`` moves only when ``status`` changes, never on a mere re-statement.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]
Condition = dict[str, Any]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def rfc3339(moment: datetime.datetime) -> str:
    """Kubernetes timestamps: second precision, UTC, ``Z`` suffix."""
    return moment.astimezone(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_condition(
    type_: str,
    status: ConditionStatus | bool,
    reason: str,
    message: str,
    *,
    observed_generation: int | None,
    now: datetime.datetime | None = None,
) -> Condition:
    if isinstance(status, bool):
        status = "True" if status else "False"
    condition: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": rfc3339(now or utcnow()),
    }
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    return condition


def merge_conditions(
    existing: Iterable[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
) -> list[Condition]:
    """Replace conditions by type, keeping the old ``lastTransitionTime`` when the status holds.

    Conditions of other types are kept as they are, in their original order, so a controller
    that owns some condition types never erases another's.
    """
    merged: dict[str, Condition] = {str(c["type"]): dict(c) for c in (existing or [])}
    for update in updates:
        previous = merged.get(update["type"])
        new = dict(update)
        if previous is not None and previous.get("status") == new["status"]:
            new["lastTransitionTime"] = previous.get("lastTransitionTime", new["lastTransitionTime"])
        merged[new["type"]] = new
    return list(merged.values())


def conditions_equal_ignoring_time(
    a: Iterable[Mapping[str, Any]] | None, b: Iterable[Mapping[str, Any]] | None
) -> bool:
    """Whether two condition lists say the same thing; used to skip no-op status patches."""

    def strip(conds: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
        return sorted(
            ({k: v for k, v in c.items() if k != "lastTransitionTime"} for c in (conds or [])),
            key=lambda c: str(c.get("type")),
        )

    return strip(a) == strip(b)


def find_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for condition in conditions or []:
        if condition.get("type") == type_:
            return condition
    return None
