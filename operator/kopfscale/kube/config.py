"""Where the API server is and who we are to it: loaded once, shared by every request.

kopf authenticates its watches by itself (``kopf.on.login`` in :mod:`kopfscale.app`); our own
reads and writes go through one ``ApiClient`` of the official client, so connections are pooled
and the configuration is read once — from the ServiceAccount in a Pod, else ``$KUBECONFIG`` as it
is *when first used* (the client's own default is frozen at import, and tests set it later).
"""

from __future__ import annotations

import functools
import os
import threading

import kubernetes
import urllib3

_lock = threading.Lock()
#: Connections kept to the API server: one per thread that may call it at once — kopf's handler
#: threads (32, ``app.configure``), the I/O threads of the rounds (32, ``app.IO_THREADS``), the
#: ``/scale`` writers (32, ``autoscaler.SCALE_THREADS``), the liveness probe and the peering gate —
#: so that no request waits for a connection, and none is opened, handshaken and thrown away
#: because the pool was full.
CONNECTIONS = 104


@functools.cache
def configuration() -> kubernetes.client.Configuration:
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=config
        )
    config.connection_pool_maxsize = CONNECTIONS
    # A timed-out read is not retried (the caller's timeout is the bound, not four times it);
    # a refused connection is retried once.
    config.retries = urllib3.Retry(total=1, connect=1, read=0, redirect=0, status=0)
    return config


@functools.cache
def api_client() -> kubernetes.client.ApiClient:
    with _lock:
        return kubernetes.client.ApiClient(configuration())


def reset() -> None:
    """Forget the loaded configuration (tests switch clusters and credentials between runs)."""
    configuration.cache_clear()
    api_client.cache_clear()
