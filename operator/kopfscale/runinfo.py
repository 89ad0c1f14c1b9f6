"""The one line ``kopfscale run`` prints first: which cluster, which scope, which endpoints.

A development operator started against the wrong kubeconfig context acts with the user's own
credentials; saying plainly where it runs, on what and with which peering is the least it owes
the user. Pure apart from :func:`current_cluster`, which reads the kubeconfig.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

IN_CLUSTER = "in-cluster (ServiceAccount)"


def current_cluster() -> tuple[str, str]:
    """(context name, server URL) of the kubeconfig kopf will use, or the in-cluster account."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        return IN_CLUSTER, f"https://{host}:{os.environ.get('KUBERNETES_SERVICE_PORT', '443')}"
    import kubernetes  # the official client parses kubeconfigs (merged lists, current-context)

    path = os.environ.get("KUBECONFIG") or None
    try:
        _, active = kubernetes.config.list_kube_config_contexts(config_file=path)
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=path, client_configuration=configuration)
        return str(active["name"]), str(configuration.host)
    except Exception as e:  # the operator reports its own login failure; this line only informs
        return "unknown", f"kubeconfig unreadable: {e}"


def scope_text(clusterwide: bool, namespaces: Sequence[str]) -> str:
    return "all namespaces" if clusterwide else "namespaces " + ", ".join(namespaces)


def peering_text(standalone: bool, peering_name: str | None, priority: int | None) -> str:
    if standalone:
        return "standalone (no peering: no other kopfscale may run on this cluster)"
    name = peering_name or "default"
    return f"peering {name} (priority {priority or 0})"


def summary(
    *,
    context: str,
    server: str,
    clusterwide: bool,
    namespaces: Sequence[str],
    standalone: bool,
    peering_name: str | None,
    priority: int | None,
    metrics: str | None,
    liveness: str | None,
) -> str:
    parts = [
        f"kopfscale: cluster {context} ({server})",
        f"scope {scope_text(clusterwide, namespaces)}",
        peering_text(standalone, peering_name, priority),
        f"metrics {metrics or 'off'}",
        f"liveness {liveness or 'off'}",
    ]
    return "; ".join(parts)
