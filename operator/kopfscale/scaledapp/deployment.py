"""The Deployment a ScaledApp's ``spec.template`` asks for, and what its watch tells of it. Pure.

The ScaledApp owns it (garbage-collected with it), starts it at ``max(minReplicas, 1)`` and never
rewrites its replicas except through ``/scale``; its pod template is compared by a hash kept in an
annotation, so a settled Deployment is recognised from the watch alone (:func:`indexed_state`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import kopf

from kopfscale.kube.health import deployment_problem
from kopfscale.kube.ownership import MANAGED_BY
from kopfscale.scaledapp.spec import ScaledAppSpec
from kopfscale.scaledapp.workload import ScaleState

SCALEDAPP_LABEL = "kopfscale.dev/scaledapp"
TEMPLATE_HASH_ANNOTATION = "kopfscale.dev/template-hash"


def initial_replicas(spec: ScaledAppSpec) -> int:
    """The owned Deployment starts at minReplicas, but at 1 when that is 0 (zero comes by cooldown)."""
    return max(spec.min_replicas, 1)


def owned_deployment(body: Mapping[str, Any], spec: ScaledAppSpec) -> dict[str, Any]:
    """The Deployment ``spec.template`` asks for, owned by the ScaledApp ``body``."""
    assert spec.template is not None
    meta = body["metadata"]
    manifest = deployment_manifest(
        str(meta["name"]), str(meta["namespace"]), spec.template, initial_replicas(spec)
    )
    kopf.append_owner_reference(manifest, owner=body)  # type: ignore[arg-type]
    return manifest


def selector_of(labels: Mapping[str, str]) -> str | None:
    """A label selector string from matchLabels (the form ``/scale`` reports)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None


def selector_labels(name: str) -> dict[str, str]:
    return {SCALEDAPP_LABEL: name}


def pod_template(name: str, template: Mapping[str, Any]) -> dict[str, Any]:
    tmpl = copy.deepcopy(dict(template))
    metadata = dict(tmpl.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **selector_labels(name)}
    tmpl["metadata"] = metadata
    return tmpl


def template_hash(template: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:16]


def deployment_manifest(
    name: str, namespace: str, template: Mapping[str, Any], replicas: int
) -> dict[str, Any]:
    """The Deployment kopfscale runs for ``spec.template`` (owner reference added by the caller)."""
    tmpl = pod_template(name, template)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**MANAGED_BY, **selector_labels(name)},
            "annotations": {TEMPLATE_HASH_ANNOTATION: template_hash(tmpl)},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(name)},
            "template": tmpl,
        },
    }


def trim_deployment(body: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`indexed_state` needs of an owned Deployment; kept in a kopf index per object."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    return {
        "owners": sorted(str(o.get("uid")) for o in meta.get("ownerReferences") or []),
        "templateHash": (meta.get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION),
        "deleting": bool(meta.get("deletionTimestamp")),
        "generation": int(meta.get("generation") or 0),
        "replicas": int(spec.get("replicas") or 0),
        "statusReplicas": int((body.get("status") or {}).get("replicas") or 0),
        "readyReplicas": int((body.get("status") or {}).get("readyReplicas") or 0),
        "matchLabels": dict((spec.get("selector") or {}).get("matchLabels") or {}),
        "problem": deployment_problem(body),
    }


def indexed_state(
    indexed: Mapping[str, Any] | None, manifest: Mapping[str, Any], owner_uid: str
) -> ScaleState | None:
    """The scale of the owned Deployment as the watch last saw it, if nothing needs doing to it.

    ``None`` means "ask the apiserver": the Deployment is unknown, being deleted, not ours, or
    its pod template is out of date; :func:`ensure_deployment` then creates, updates or refuses.
    """
    if indexed is None or indexed["deleting"] or owner_uid not in indexed["owners"]:
        return None
    if indexed["templateHash"] != manifest["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]:
        return None
    labels = indexed["matchLabels"]
    problem = indexed.get("problem")
    return ScaleState(
        replicas=indexed["replicas"],
        status_replicas=indexed["statusReplicas"],
        selector=selector_of(labels),
        problem=(str(problem[0]), str(problem[1])) if problem else None,
        ready_replicas=indexed.get("readyReplicas"),
        generation=indexed.get("generation"),
    )
