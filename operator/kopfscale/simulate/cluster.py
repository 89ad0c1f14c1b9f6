"""``--from-cluster NAMESPACE/NAME``: read one ScaledApp through the kubeconfig (a GET, nothing else)."""

from __future__ import annotations

from typing import Any

from kopfscale import GROUP, VERSION
from kopfscale.simulate.errors import InputError


def split_ref(ref: str) -> tuple[str, str]:
    namespace, sep, name = ref.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise InputError(f"--from-cluster {ref!r}: expected NAMESPACE/NAME")
    return namespace, name


def read_scaledapp(ref: str) -> dict[str, Any]:
    """The ScaledApp as the API server has it, through the operator's own transport (read-only)."""
    namespace, name = split_ref(ref)
    from kubernetes.config import ConfigException

    from kopfscale.kube import ApiError, path, transport

    try:
        body = transport().get(path(GROUP, VERSION, "scaledapps", namespace, name))
    except ConfigException as e:
        raise InputError(f"--from-cluster: no usable kubeconfig: {e}") from None
    except ApiError as e:
        raise InputError(f"--from-cluster {ref}: {e}") from None
    if body is None:
        raise InputError(f"--from-cluster {ref}: no such ScaledApp")
    return body
