"""THE BASELINE — not kopfscale. The naive operator the project grew from, for comparison only.

The article's approach: one loop that, every second, lists every custom object and patches each
one unconditionally — no watches, no caching, no comparison with what is already there.

To make the comparison about the *loop* and not about the manifests, it builds exactly the objects
kopfscale builds (kopfscale's pure manifest and status functions) and uses the same official
client; only the control flow is naive:

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
import sys
import time
import urllib.request
from typing import Any

from kubernetes.client.exceptions import ApiException

from kopfscale import GROUP, VERSION, kube
from kopfscale import settings as kopfscale_settings
from kopfscale.greeter import manifests, reconcile, status
from kopfscale.scaledapp import api as scaledapp_api
from kopfscale.scaledapp import deployment

PERIOD = 1.0  # seconds between the starts of two passes
api = reconcile.KubeApi()


def owner_reference(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def apply(kind: reconcile.Kind, body: dict[str, Any]) -> dict[str, Any]:
    """PATCH unconditionally; POST when it does not exist yet."""
    meta = body["metadata"]
    try:
        return api.patch_child(kind, meta["namespace"], meta["name"], body)
    except ApiException as e:
        if e.status != 404:
            raise
    return api.create_child(kind, meta["namespace"], body)


def sync_greeter(greeter: dict[str, Any], config: kopfscale_settings.OperatorSettings) -> None:
    children = reconcile.desired_children(greeter, config)
    deployment = apply("Deployment", manifests.prune_nones(children["Deployment"]))
    service = apply("Service", manifests.prune_nones(children["Service"]))
    new = status.compute_status(greeter, deployment, service, config)
    meta = greeter["metadata"]
    api.patch_greeter_status(meta["namespace"], meta["name"], {"status": new})


def read_metric(url: str, location: str) -> float:
    with urllib.request.urlopen(url, timeout=3) as response:
        document = json.loads(response.read())
    return float(document[location.removeprefix("$.")])


def sync_scaledapp(app: dict[str, Any]) -> None:
    meta, spec = app["metadata"], app["spec"]
    metric = spec["metrics"][0]
    value = read_metric(metric["http"]["url"], metric["http"]["valueLocation"])
    wanted = math.ceil(value / float(metric["target"]["value"]))
    replicas = max(int(spec.get("minReplicas", 1)), min(int(spec["maxReplicas"]), wanted))
    body = deployment.deployment_manifest(meta["name"], meta["namespace"], spec["template"], replicas)
    body["metadata"]["ownerReferences"] = [owner_reference(app)]
    apply("Deployment", body)
    scaledapp_api.patch_status(
        meta["name"], meta["namespace"], {"replicas": replicas, "desiredReplicas": replicas}
    )


def one_pass(config: kopfscale_settings.OperatorSettings) -> int:
    """List every Greeter and ScaledApp and patch each one, one after the other."""
    objects = kube.custom_objects()
    errors = 0
    for plural in ("greeters", "scaledapps"):
        listing: Any = objects.list_cluster_custom_object(GROUP, VERSION, plural)
        for item in listing["items"]:
            try:
                if plural == "greeters":
                    sync_greeter(item, config)
                else:
                    sync_scaledapp(item)
            except Exception as e:  # the naive loop logs and goes on with the next object
                errors += 1
                if errors <= 3:
                    print(f"baseline: {plural}/{item['metadata']['name']}: {e}", file=sys.stderr)
    return errors


def main() -> None:
    config = kopfscale_settings.load()
    first = True
    while True:
        started = time.monotonic()
        errors = one_pass(config)
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
