"""The one API transport of both controllers: raw JSON in and out, a timeout on every call.

Bodies are plain dicts sent as written: the official client's typed models would convert them
through classes stricter than the API server (an integer memory quantity fails) and lossy for
fields they do not know (a template with a newer or mistyped field), so a user's template would
never reach the API server to be accepted, or refused with its own message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kubernetes
import urllib3

from kopfscale.kube.config import api_client
from kopfscale.kube.errors import ApiError

Body = dict[str, Any]
#: Seconds per request: a hung or half-open connection never holds a worker or a loop forever.
REQUEST_TIMEOUT = 10.0
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
FIELD_MANAGER = "kopfscale"


def path(
    group: str,
    version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...`` otherwise."""
    parts = ["/api/v1" if not group else f"/apis/{group}/{version}"]
    if namespace is not None:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name is not None:
        parts.append(name)
    if subresource is not None:
        parts.append(subresource)
    return "/".join(parts)


class Transport:
    """Synchronous requests over the shared connection pool (callers in async code use a thread)."""

    def __init__(
        self, timeout: float = REQUEST_TIMEOUT, client: Callable[[], kubernetes.client.ApiClient] = api_client
    ) -> None:
        self.timeout = timeout
        self._client = client  # the shared, lazily configured client; a test may give its own

    def request(
        self,
        method: str,
        resource_path: str,
        *,
        body: Any = None,
        query: Sequence[tuple[str, str]] | None = None,
        content_type: str = JSON,
        timeout: float | None = None,
    ) -> Body:
        client = self._client()
        params = list(query or [])
        if method in ("POST", "PATCH", "PUT"):
            params.append(("fieldManager", FIELD_MANAGER))
        request = client.param_serialize(
            method=method,
            resource_path=resource_path,
            query_params=params or None,
            header_params={"Accept": JSON, "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response: Any = client.call_api(*request, _request_timeout=timeout or self.timeout)
            data = response.read()
        except urllib3.exceptions.HTTPError as e:
            raise ApiError(None, type(e).__name__, _oneline(str(e))) from None
        if not 200 <= response.status <= 299:
            raise ApiError.from_response(response.status, response.reason, data)
        loaded: Body = json.loads(data) if data else {}
        return loaded

    def get(
        self, resource_path: str, *, query: Sequence[tuple[str, str]] | None = None, **kw: Any
    ) -> Body | None:
        """The object, or None when it does not exist (404)."""
        try:
            return self.request("GET", resource_path, query=query, **kw)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def create(self, collection_path: str, body: Mapping[str, Any]) -> Body:
        return self.request("POST", collection_path, body=dict(body))

    def merge_patch(self, resource_path: str, patch: Mapping[str, Any]) -> Body:
        return self.request("PATCH", resource_path, body=dict(patch), content_type=MERGE_PATCH)

    def json_patch(self, resource_path: str, operations: Sequence[Mapping[str, Any]]) -> Body:
        return self.request("PATCH", resource_path, body=list(operations), content_type=JSON_PATCH)


def _oneline(text: str) -> str:
    return " ".join(text.split())[:300]


_default = Transport()


def transport() -> Transport:
    """The process's transport (its configuration is loaded on first use; see :func:`config.reset`)."""
    return _default
