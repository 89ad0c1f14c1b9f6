"""THE BASELINE — not kopfscale. The naive operator the project grew from, for comparison only.

The article's approach: one loop that, every second, lists every custom object and patches each
one unconditionally — no watches, no caching, no comparison with what is already there.

To make the comparison about the *loop* and not about the manifests, it builds exactly the objects
kopfscale builds (kopfscale's pure manifest and status functions, its only imports from kopfscale)
and talks to the API with the same official client and raw JSON bodies, through its own few lines
of transport below; only the control flow is naive:

- every Greeter: PATCH its Deployment and Service (POST when missing), PATCH its status;
- every ScaledApp: GET its ``http`` metric, PATCH its Deployment with the replicas that
  ``ceil(value / target)`` gives (POST when missing), PATCH its status.

It supports what the benchmark's objects use (http metrics with an AverageValue target), nothing
more. Run as a process with KUBECONFIG pointing at the counting proxy:

    python -m bench.baseline
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import urllib.request
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from kopfscale import GROUP, VERSION
from kopfscale import settings as kopfscale_settings
from kopfscale.greeter import manifests, reconcile, status
from kopfscale.scaledapp import deployment

PERIOD = 1.0  # seconds between the starts of two passes
MERGE_PATCH = "application/merge-patch+json"
Body = dict[str, Any]


class Api:
    """Raw JSON requests over the official client's transport, as kopfscale sends them."""

    def __init__(self) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
        )
        self.client = kubernetes.client.ApiClient(configuration)

    def request(
        self, method: str, path: str, body: Body | None = None, content_type: str = "application/json"
    ) -> Body:
        query = [("fieldManager", "kopfscale")] if method in ("POST", "PATCH") else None
        serialized = self.client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        response: Any = self.client.call_api(*serialized)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        loaded: Body = json.loads(data)
        return loaded

    @staticmethod
    def child_path(kind: str, namespace: str, name: str | None = None) -> str:
        base = (
            f"/apis/apps/v1/namespaces/{namespace}/deployments"
            if kind == "Deployment"
            else f"/api/v1/namespaces/{namespace}/services"
        )
        return base if name is None else f"{base}/{name}"

    def patch_status(self, plural: str, namespace: str, name: str, status: Body) -> None:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}/status"
        self.request("PATCH", path, {"status": status}, MERGE_PATCH)

    def list_all(self, plural: str) -> list[Body]:
        items: list[Body] = self.request("GET", f"/apis/{GROUP}/{VERSION}/{plural}")["items"]
        return items


def owner_reference(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def apply(api: Api, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """PATCH unconditionally; POST when it does not exist yet."""
    meta = body["metadata"]
    try:
        return api.request("PATCH", api.child_path(kind, meta["namespace"], meta["name"]), body, MERGE_PATCH)
    except ApiException as e:
        if e.status != 404:
            raise
    return api.request("POST", api.child_path(kind, meta["namespace"]), body)


def sync_greeter(api: Api, greeter: dict[str, Any], config: kopfscale_settings.OperatorSettings) -> None:
    children = reconcile.desired_children(greeter, config)
    deployment = apply(api, "Deployment", manifests.prune_nones(children["Deployment"]))
    service = apply(api, "Service", manifests.prune_nones(children["Service"]))
    new = status.compute_status(greeter, deployment, service, config)
    meta = greeter["metadata"]
    api.patch_status("greeters", meta["namespace"], meta["name"], dict(new))


def read_metric(url: str, location: str) -> float:
    with urllib.request.urlopen(url, timeout=3) as response:
        document = json.loads(response.read())
    return float(document[location.removeprefix("$.")])


def sync_scaledapp(api: Api, app: dict[str, Any]) -> None:
    meta, spec = app["metadata"], app["spec"]
    metric = spec["metrics"][0]
    value = read_metric(metric["http"]["url"], metric["http"]["valueLocation"])
    wanted = math.ceil(value / float(metric["target"]["value"]))
    replicas = max(int(spec.get("minReplicas", 1)), min(int(spec["maxReplicas"]), wanted))
    body = deployment.deployment_manifest(meta["name"], meta["namespace"], spec["template"], replicas)
    body["metadata"]["ownerReferences"] = [owner_reference(app)]
    apply(api, "Deployment", body)
    api.patch_status(
        "scaledapps", meta["namespace"], meta["name"], {"replicas": replicas, "desiredReplicas": replicas}
    )


def one_pass(api: Api, config: kopfscale_settings.OperatorSettings) -> int:
    """List every Greeter and ScaledApp and patch each one, one after the other."""
    errors = 0
    for plural in ("greeters", "scaledapps"):
        for item in api.list_all(plural):
            try:
                if plural == "greeters":
                    sync_greeter(api, item, config)
                else:
                    sync_scaledapp(api, item)
            except Exception as e:  # the naive loop logs and goes on with the next object
                errors += 1
                if errors <= 3:
                    print(f"baseline: {plural}/{item['metadata']['name']}: {e}", file=sys.stderr)
    return errors


def main() -> None:
    api = Api()
    config = kopfscale_settings.load()
    first = True
    while True:
        started = time.monotonic()
        errors = one_pass(api, config)
        elapsed = time.monotonic() - started
        if first:
            print(f"baseline: first pass done in {elapsed:.2f} s", flush=True)
            first = False
        if errors:
            print(f"baseline: pass with {errors} errors ({elapsed:.2f} s)", flush=True)
        time.sleep(max(0.0, PERIOD - elapsed))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
