"""kopf's diff base, switched off: both controllers are level-based.

kopf keeps a "last handled" copy of every object (the diff base) to tell change handlers what
changed. kopfscale has no change handlers — only watch-event handlers and indexes, each pass or
round reading the state as it is — so nothing ever compares against one. kopf would still build
it on every watch event of every watched object (a deep copy of the whole object, status and
managedFields included: a sixth of the event loop's time in a burst, measured with py-spy), unless
its storage says there is none. ``app.configure`` installs this one.
"""

from __future__ import annotations

from typing import Any, cast

import kopf


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff base that is never built, kept or read."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None
