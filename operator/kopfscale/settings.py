"""Operator-wide settings, read once at startup (:func:`kopfscale.app.wire`) and passed down.

They come from the environment, which the Deployment (Helm values) or ``kopfscale run``'s flags set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_GREETER_IMAGE = "ghcr.io/kopfscale/kopfscale:0.1.0"


@dataclass(frozen=True)
class OperatorSettings:
    #: Image the Greeter Pods run when a Greeter has no ``spec.image``.
    greeter_image: str
    #: Cluster DNS suffix used to build in-cluster URLs in status.
    cluster_domain: str


def load() -> OperatorSettings:
    return OperatorSettings(
        greeter_image=os.environ.get("KOPFSCALE_GREETER_IMAGE", DEFAULT_GREETER_IMAGE),
        cluster_domain=os.environ.get("KOPFSCALE_CLUSTER_DOMAIN", "cluster.local"),
    )
