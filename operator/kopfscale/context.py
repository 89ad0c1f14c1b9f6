"""What the composition root (:mod:`kopfscale.app`) builds once and every handler is given.

kopf passes its operator-wide ``memo`` to every handler; the startup handler in ``app.py`` puts
one :class:`Context` there, so settings are read once and the controllers' APIs are built once,
and a handler's dependencies are visible in its code rather than hidden in module globals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kopfscale.settings import OperatorSettings

if TYPE_CHECKING:
    from kopfscale.greeter.reconcile import Api as GreeterApi
    from kopfscale.scaledapp.autoscaler import Api as ScaledAppApi

MEMO_KEY = "kopfscale"


@dataclass(frozen=True)
class Context:
    settings: OperatorSettings
    greeters: GreeterApi
    scaledapps: ScaledAppApi


def of(memo: Mapping[str, Any]) -> Context:
    context = memo.get(MEMO_KEY)
    if not isinstance(context, Context):
        raise RuntimeError("kopfscale's startup handler has not run (load the handlers with kopfscale.app)")
    return context
