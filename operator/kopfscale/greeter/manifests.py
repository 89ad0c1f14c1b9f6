"""The Greeter's children as plain dicts, and the rule for "does the live child still match".

Pure on purpose: everything the controller decides (what to create, whether to write, what to
report as drift) is a function of the Greeter, the operator settings and the live objects, so
it is unit-tested without a cluster and the handlers stay thin.

The match rule mirrors how the controller writes: JSON merge patches of the fields we own.
Maps we write are merged by the apiserver, so extra keys others add (labels, annotations,
defaults) are left alone and not counted as drift; lists we write (containers, env, ports)
are replaced whole, so they must match element for element. ``None`` in a desired object means
"must be absent" (it becomes a ``null`` in the patch, which deletes the field).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import InvalidOperation
from typing import Any

import kopf
from kubernetes.utils.quantity import parse_quantity

from kopfscale import API_VERSION
from kopfscale.kube.ownership import MANAGED_BY_LABEL, MANAGED_BY_VALUE, is_controlled_by
from kopfscale.settings import OperatorSettings

KIND = "Greeter"
#: Label values shared by every child; the drift handlers select children with them.
MANAGED_BY = MANAGED_BY_VALUE
COMPONENT = "greeter"
APP_NAME = "greeter"
CONTAINER_NAME = "greeter"
#: The Pods always listen here (named port "http"); ``spec.port`` is the Service's port.
CONTAINER_PORT = 8080
HEALTH_PATH = "/healthz"

DEFAULT_REPLICAS = 1
DEFAULT_PORT = 8080
DEFAULT_SERVICE_TYPE = "ClusterIP"

#: The labels the drift handlers filter on (kopf ``labels=``).
CHILD_SELECTOR_LABELS: Mapping[str, str] = {
    MANAGED_BY_LABEL: MANAGED_BY,
    "app.kubernetes.io/component": COMPONENT,
}

Manifest = dict[str, Any]


@dataclass(frozen=True)
class GreeterSpec:
    """``spec`` with the CRD's defaults applied (the apiserver defaults too; this is for safety)."""

    message: str
    replicas: int = DEFAULT_REPLICAS
    port: int = DEFAULT_PORT
    image: str | None = None
    service_type: str = DEFAULT_SERVICE_TYPE
    resources: Mapping[str, Any] | None = field(default=None, hash=False)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> GreeterSpec:
        resources = spec.get("resources")
        return cls(
            message=str(spec["message"]),
            replicas=int(spec.get("replicas", DEFAULT_REPLICAS)),
            port=int(spec.get("port", DEFAULT_PORT)),
            image=spec.get("image") or None,
            service_type=str(spec.get("serviceType", DEFAULT_SERVICE_TYPE)),
            resources=copy.deepcopy(dict(resources)) if resources else None,
        )


@dataclass(frozen=True)
class Owner:
    """Who the children belong to: enough of the Greeter to name, label and adopt them."""

    name: str
    namespace: str
    uid: str
    api_version: str = API_VERSION
    kind: str = KIND

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        meta = body["metadata"]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            api_version=body.get("apiVersion", API_VERSION),
            kind=body.get("kind", KIND),
        )

    def reference(self) -> dict[str, Any]:
        """The controller owner reference, as kopf writes it: garbage collection deletes the
        children with us, and blocks our deletion until it has."""
        holder: dict[str, Any] = {}
        body = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {"name": self.name, "uid": self.uid},
        }
        kopf.append_owner_reference(holder, owner=kopf.Body(body))  # type: ignore[arg-type]
        reference: dict[str, Any] = holder["metadata"]["ownerReferences"][0]
        return reference


def selector_labels(name: str) -> dict[str, str]:
    """The Pod selector: immutable on a Deployment, so it holds only what never changes."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": name}


def labels(name: str) -> dict[str, str]:
    return {**selector_labels(name), **CHILD_SELECTOR_LABELS, "app.kubernetes.io/part-of": "kopfscale"}


def selector_string(name: str) -> str:
    """``status.selector`` for the scale subresource (HPA finds the Pods with it)."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def service_url(name: str, namespace: str, port: int, cluster_domain: str) -> str:
    return f"http://{name}.{namespace}.svc.{cluster_domain}:{port}"


def image_for(spec: GreeterSpec, settings: OperatorSettings) -> str:
    return spec.image or settings.greeter_image


def _metadata(owner: Owner) -> dict[str, Any]:
    return {
        "name": owner.name,
        "namespace": owner.namespace,
        "labels": labels(owner.name),
        "ownerReferences": [owner.reference()],
    }


def build_deployment(owner: Owner, spec: GreeterSpec, settings: OperatorSettings) -> Manifest:
    """The greeting servers. The message travels as env, so changing it changes the Pod
    template and the Deployment controller rolls every Pod onto the new message."""
    probe = {"httpGet": {"path": HEALTH_PATH, "port": "http"}}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image_for(spec, settings),
        "command": ["kopfscale", "greet"],
        "env": [
            {"name": "GREETER_MESSAGE", "value": spec.message},
            {"name": "GREETER_HOST", "value": "0.0.0.0"},
            {"name": "GREETER_PORT", "value": str(CONTAINER_PORT)},
        ],
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        # None means "no resources": the merge patch then deletes what an earlier spec set.
        "resources": copy.deepcopy(dict(spec.resources)) if spec.resources else None,
        # The restricted Pod Security Standard, so Greeters run in namespaces that enforce it.
        # The server writes nothing to disk; the project image runs as a numeric non-root UID.
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels(owner.name)},
            "template": {
                "metadata": {"labels": labels(owner.name)},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                },
            },
        },
    }


def build_service(owner: Owner, spec: GreeterSpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner),
        "spec": {
            "type": spec.service_type,
            "selector": selector_labels(owner.name),
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


@dataclass(frozen=True)
class Desired:
    """What one Greeter asks for, computed once per pass: its spec and both children."""

    spec: GreeterSpec
    deployment: Manifest = field(hash=False)
    service: Manifest = field(hash=False)


def desired_for(greeter: Mapping[str, Any], settings: OperatorSettings) -> Desired:
    owner = Owner.from_body(greeter)
    spec = GreeterSpec.from_spec(greeter.get("spec") or {})
    return Desired(spec, build_deployment(owner, spec, settings), build_service(owner, spec))


def prune_nones(obj: Any) -> Any:
    """The body to create: ``None`` ("absent") keys dropped, as the apiserver would store it."""
    if isinstance(obj, Mapping):
        return {k: prune_nones(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [prune_nones(v) for v in obj]
    return obj


def merge_patch(desired: Manifest, resource_version: str | None) -> Manifest:
    """A JSON merge patch that makes the live child match ``desired`` in the fields we own.

    Owner references are left out: we only patch children already controlled by us, and a
    list in a merge patch would replace other owners' references. ``resourceVersion`` makes
    the write conditional, so we never overwrite a change we have not seen.
    """
    metadata: dict[str, Any] = {"labels": desired["metadata"]["labels"]}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {"metadata": metadata, "spec": copy.deepcopy(desired["spec"])}


def _is_quantity_path(path: tuple[str, ...]) -> bool:
    return len(path) >= 2 and path[-2] in ("limits", "requests") and "resources" in path


def _same_quantity(a: Any, b: Any) -> bool:
    """The apiserver canonicalises quantities (``0.5`` → ``500m``); compare their values."""
    try:
        return bool(parse_quantity(a) == parse_quantity(b))  # type: ignore[no-untyped-call]
    except (ValueError, InvalidOperation, TypeError):
        return False


def _absent(value: Any) -> bool:
    return value is None or value in ({}, [])


def differences(desired: Any, live: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Paths where ``live`` does not match ``desired``; empty means "nothing to write".

    Dicts: every desired key must match (extra live keys are someone else's or defaults).
    Lists: same length and element-wise match (we replace lists whole). ``None``: absent.
    """
    where = ".".join(path) or "."
    if desired is None:
        return [] if _absent(live) else [where]
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return [where]
        found: list[str] = []
        for key, value in desired.items():
            found.extend(differences(value, live.get(key), (*path, str(key))))
        return found
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [where]
        found = []
        for index, (d, v) in enumerate(zip(desired, live, strict=True)):
            label = d.get("name", index) if isinstance(d, Mapping) else index
            found.extend(differences(d, v, (*path, f"[{label}]")))
        return found
    if desired == live and type(desired) is type(live):
        return []
    if _is_quantity_path(path) and _same_quantity(desired, live):
        return []
    return [where]


def child_differences(desired: Manifest, live: Mapping[str, Any]) -> list[str]:
    """What of a live child must change: our labels, our controller reference and our spec."""
    found = differences(
        desired["metadata"]["labels"],
        (live.get("metadata") or {}).get("labels") or {},
        ("metadata", "labels"),
    )
    if not is_controlled_by(live, desired["metadata"]["ownerReferences"][0]["uid"]):
        found.append("metadata.ownerReferences")
    found.extend(differences(desired["spec"], live.get("spec"), ("spec",)))
    return found


def describe_differences(found: list[str], limit: int = 4) -> str:
    shown = ", ".join(found[:limit])
    return shown + (f" and {len(found) - limit} more" if len(found) > limit else "")


__all__ = [
    "CHILD_SELECTOR_LABELS",
    "Desired",
    "GreeterSpec",
    "Manifest",
    "Owner",
    "build_deployment",
    "build_service",
    "child_differences",
    "desired_for",
    "differences",
    "labels",
    "merge_patch",
    "prune_nones",
    "selector_labels",
    "selector_string",
    "service_url",
]
