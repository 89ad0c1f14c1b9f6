"""The operator's own Kubernetes API client (the official ``kubernetes`` package).

kopf authenticates its watches by itself; our handlers' reads and writes go through one
shared ``ApiClient`` so connections are pooled and the configuration is loaded once.
"""

from __future__ import annotations

import functools
import os
import threading

import kubernetes

_lock = threading.Lock()


@functools.cache
def _load_configuration() -> kubernetes.client.Configuration:
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        # Read $KUBECONFIG now: the client's own default is frozen when it is first imported,
        # and tests point KUBECONFIG at their cluster only after that.
        kubernetes.config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
    # Handlers run concurrently in kopf's thread pool; let them share enough connections.
    configuration.connection_pool_maxsize = 32
    return configuration


@functools.cache
def api_client() -> kubernetes.client.ApiClient:
    with _lock:
        return kubernetes.client.ApiClient(_load_configuration())


def apps_v1() -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(api_client())


def core_v1() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client())


def custom_objects() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client())


def reset() -> None:
    """Forget the cached configuration (tests switch clusters/credentials between runs)."""
    _load_configuration.cache_clear()
    api_client.cache_clear()
