"""The operator's settings: one object, read once at startup (:func:`kopfscale.app.wire`), passed down.

They come from the environment, which the Deployment (Helm values) or ``kopfscale run``'s flags
set; this module is the one place that reads the ``KOPFSCALE_*`` variables of the operator.
A malformed value is a :class:`SettingsError` naming the variable, before anything starts.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from kopfscale import egress

DEFAULT_GREETER_IMAGE = "ghcr.io/kopfscale/kopfscale:0.1.0"
GREETER_IMAGE_ENV = "KOPFSCALE_GREETER_IMAGE"
CLUSTER_DOMAIN_ENV = "KOPFSCALE_CLUSTER_DOMAIN"
#: ``off`` for namespaced installs: a Role cannot list Namespaces or CRDs (see :mod:`kopfscale.peering`).
SCANNING_ENV = "KOPFSCALE_KOPF_SCANNING"
METRICS_PORT_ENV = "KOPFSCALE_METRICS_PORT"
METRICS_ADDRESS_ENV = "KOPFSCALE_METRICS_ADDRESS"
#: The namespaces the operator watches (``kopfscale run`` sets it; empty: every namespace).
NAMESPACES_ENV = "KOPFSCALE_NAMESPACES"


class SettingsError(ValueError):
    """A setting the operator cannot start with."""


@dataclass(frozen=True)
class OperatorSettings:
    #: Image the Greeter Pods run when a Greeter has no ``spec.image``.
    greeter_image: str = DEFAULT_GREETER_IMAGE
    #: Cluster DNS suffix used to build in-cluster URLs in status.
    cluster_domain: str = "cluster.local"
    #: Whether kopf scans Namespaces and CRDs (cluster-wide installs) or watches exact namespaces.
    kopf_scanning: bool = True
    #: Where metric sources may connect (:mod:`kopfscale.egress`).
    egress: egress.EgressPolicy = field(default_factory=egress.EgressPolicy)
    #: The operator's own /metrics endpoint: its port (None: off) and the address it binds to.
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    #: The namespaces watched, when not all: where a namespaced install's kopf peering objects are.
    namespaces: tuple[str, ...] = ()


def _api_server() -> str | None:
    """The API server this operator talks to (its egress policy refuses it to metric sources)."""
    with contextlib.suppress(Exception):  # no kubeconfig at all (a bare tool): nothing to refuse
        from kopfscale.kube import config

        return str(config.configuration().host)
    return None


def _port(raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise SettingsError(f"{METRICS_PORT_ENV}={raw!r} is not a port number (0-65535; 0 or empty: off)")
    return int(raw) or None


def load(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    env = os.environ if environ is None else environ
    scanning = env.get(SCANNING_ENV, "on").strip().lower()
    if scanning not in ("on", "off"):
        raise SettingsError(f"{SCANNING_ENV} must be 'on' or 'off', not {scanning!r}")
    try:
        policy = egress.from_env(env, kubeconfig_server=_api_server())
    except egress.PolicyError as e:
        raise SettingsError(f"egress policy: {e}") from None
    return OperatorSettings(
        metrics_port=_port(env.get(METRICS_PORT_ENV, "")),
        metrics_address=env.get(METRICS_ADDRESS_ENV) or "127.0.0.1",
        greeter_image=env.get(GREETER_IMAGE_ENV, DEFAULT_GREETER_IMAGE),
        cluster_domain=env.get(CLUSTER_DOMAIN_ENV, "cluster.local"),
        kopf_scanning=scanning == "on",
        egress=policy,
        namespaces=tuple(n.strip() for n in env.get(NAMESPACES_ENV, "").split(",") if n.strip()),
    )
