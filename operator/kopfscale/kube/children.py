"""Owned children: create the object, or patch what differs, or write nothing; never touch another's.

Both controllers keep objects they own this way (the Greeter its Deployment and Service, a
ScaledApp its Deployment). Writes are conditional: an update carries the ``resourceVersion`` it
was computed from, a create fails if the name is taken, and either refusal (409) means "look
again" — so a change we have not compared is never overwritten. How a controller reads, creates
and patches (index or apiserver, merge or JSON patch) is passed in; the rules are here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kopfscale.kube.errors import ApiError
from kopfscale.kube.ownership import is_controlled_by

Body = dict[str, Any]
#: Attempts at one write when the object keeps changing under us (HTTP 409 Conflict).
WRITE_ATTEMPTS = 4


@dataclass(frozen=True)
class Outcome:
    live: Body  # the child as the API server has it now (as our write returned it, if we wrote)
    verb: Literal["created", "updated"] | None  # None: it already matched, nothing was written
    fields: tuple[str, ...] = ()  # what differed, for an update


class ChildError(Exception):
    """The child cannot be made to match; subclasses say why."""


class NotOurs(ChildError):
    """The name is taken by an object that the owner does not control."""

    def __init__(self, live: Mapping[str, Any]) -> None:
        super().__init__("the object is controlled by someone else")
        self.live = live


class Terminating(ChildError):
    """The child is being deleted; it can be recreated once it is gone."""


class KeptChanging(ChildError):
    """Every attempt was refused because the object changed between our read and our write."""


class WriteFailed(ChildError):
    """The API server refused or failed a request; ``action`` is reading, creating or updating."""

    def __init__(self, action: str, error: ApiError) -> None:
        super().__init__(f"{action} failed: {error}")
        self.action, self.error = action, error


def ensure_child(
    *,
    owner_uid: str,
    read: Callable[[], Body | None],
    create: Callable[[], Body],
    update: Callable[[Body], Body],
    differences: Callable[[Body], list[str]],
) -> Outcome:
    """Make the child match: ``read`` it, ``create`` it if absent, ``update(live)`` if it differs.

    ``update`` must make its write conditional on ``live``'s resourceVersion. Exactly one
    ``created`` is reported per object that this call created: a create refused because the
    name was taken meanwhile is read again and compared, not reported.
    """
    for _ in range(WRITE_ATTEMPTS):
        try:
            live = read()
        except ApiError as e:
            raise WriteFailed("reading", e) from e
        if live is None:
            try:
                return Outcome(create(), "created")
            except ApiError as e:
                if e.status == 409:  # AlreadyExists: someone was faster; look at it again.
                    continue
                raise WriteFailed("creating", e) from e
        if not is_controlled_by(live, owner_uid):
            raise NotOurs(live)
        if (live.get("metadata") or {}).get("deletionTimestamp"):
            raise Terminating("the object is being deleted")
        found = differences(live)
        if not found:
            return Outcome(live, None)
        try:
            return Outcome(update(live), "updated", tuple(found))
        except ApiError as e:
            if e.status == 409:  # Changed since we read it: compare again against the new state.
                continue
            raise WriteFailed("updating", e) from e
    raise KeptChanging("the object kept changing while being updated")
