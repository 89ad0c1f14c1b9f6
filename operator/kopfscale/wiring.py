"""How a controller's handlers find what the composition root (:func:`kopfscale.app.wire`) gave them.

kopf hands every handler the operator's ``memo``; ``app.wire`` puts each controller's ``Wiring``
(its API, its settings) there under the controller's key at startup.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def from_memo(memo: Mapping[str, Any], key: str, kind: type[T]) -> T:
    found = memo.get(key)
    if not isinstance(found, kind):
        raise RuntimeError(f"the {key} controller is not wired (load the handlers with kopfscale.app)")
    return found
