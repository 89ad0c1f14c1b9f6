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
    namespace, name = split_ref(ref)
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config import ConfigException
    from urllib3.exceptions import HTTPError

    from kopfscale import kube

    try:
        body = kube.custom_objects().get_namespaced_custom_object(
            GROUP, VERSION, namespace, "scaledapps", name
        )
    except ConfigException as e:
        raise InputError(f"--from-cluster: no usable kubeconfig: {e}") from None
    except ApiException as e:
        raise InputError(f"--from-cluster {ref}: {e.status} {e.reason}") from None
    except (OSError, HTTPError) as e:
        raise InputError(f"--from-cluster {ref}: cannot reach the API server: {e}") from None
    if not isinstance(body, dict):
        raise InputError(f"--from-cluster {ref}: unexpected answer")
    return body
