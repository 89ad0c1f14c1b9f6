"""The Kubernetes side of an autoscaling round: what :class:`autoscaler.Api` asks, done for real.

Everything goes through the shared kube layer: one transport (raw JSON, so the user's template
reaches the API server as written and a refusal comes back with the API server's own message),
the owned-child writer for the Deployment, the status writer. Synchronous; the autoscaler runs
these calls in threads. Tests give the autoscaler a fake with the same methods instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from kopfscale import GROUP, SCALEDAPPS, VERSION
from kopfscale.kube import children
from kopfscale.kube import status as kube_status
from kopfscale.kube.health import deployment_problem
from kopfscale.kube.ownership import is_controlled_by
from kopfscale.kube.transport import Body, Transport, path
from kopfscale.scaledapp import deployment, workload
from kopfscale.scaledapp.spec import ScaledAppSpec
from kopfscale.scaledapp.workload import PodCount, ScaleState, ScaleTarget, TargetError


def _deployments(namespace: str, name: str | None = None) -> str:
    return path("apps", "v1", "deployments", namespace, name)


def _template_hash(body: Mapping[str, Any]) -> str | None:
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(deployment.TEMPLATE_HASH_ANNOTATION)
    return value if isinstance(value, str) else None


def _scale_of(body: Mapping[str, Any]) -> ScaleState:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return ScaleState(
        replicas=int(spec.get("replicas") or 0),
        status_replicas=int(status.get("replicas") or 0),
        selector=deployment.selector_of(labels),
        problem=deployment_problem(body),
        ready_replicas=int(status.get("readyReplicas") or 0),
    )


class KubeApi:
    """The real :class:`kopfscale.scaledapp.autoscaler.Api`."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.discovery = workload.Discovery(transport)

    def find_target(self, spec: ScaledAppSpec, name: str, namespace: str) -> ScaleTarget:
        return self.discovery.target_of(spec, name, namespace)

    def read_scale(self, target: ScaleTarget) -> ScaleState:
        return workload.read_scale(self.transport, target)

    def patch_scale(self, target: ScaleTarget, replicas: int) -> ScaleState:
        return workload.patch_scale(self.transport, target, replicas)

    def count_ready_pods(self, namespace: str, selector: str) -> PodCount:
        return workload.count_ready_pods(self.transport, namespace, selector)

    def ensure_deployment(self, manifest: Mapping[str, Any], owner_uid: str) -> tuple[str, ScaleState]:
        """Create the Deployment, or bring its pod template up to date; never touches its replicas.

        Returns what was done (``created``, ``updated`` or ``unchanged``) and the Deployment's scale.
        A Deployment of that name that this ScaledApp does not own is never read as its workload,
        written or scaled: that is a ``DeploymentConflict``.
        """
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        wanted = _template_hash(manifest)

        def update(live: Body) -> Body:
            annotations = {**((live.get("metadata") or {}).get("annotations") or {})}
            annotations[deployment.TEMPLATE_HASH_ANNOTATION] = str(wanted)
            return self.transport.json_patch(
                _deployments(namespace, name),
                [
                    {
                        "op": "test",
                        "path": "/metadata/resourceVersion",
                        "value": live["metadata"]["resourceVersion"],
                    },
                    {"op": "replace", "path": "/spec/template", "value": manifest["spec"]["template"]},
                    {"op": "add", "path": "/metadata/annotations", "value": annotations},
                ],
            )

        try:
            outcome = children.ensure_child(
                owner_uid=owner_uid,
                read=lambda: self.transport.get(_deployments(namespace, name)),
                create=lambda: self.transport.create(_deployments(namespace), manifest),
                update=update,
                differences=lambda live: [] if _template_hash(live) == wanted else ["spec.template"],
            )
        except children.NotOurs:
            raise TargetError(
                "DeploymentConflict",
                f"a Deployment named {name} already exists and is not owned by this ScaledApp; "
                "rename the ScaledApp or use spec.scaleTargetRef to scale that Deployment",
            ) from None
        except children.Terminating:
            raise TargetError(
                "DeploymentTerminating", f"Deployment {name} is being deleted; it will be recreated"
            ) from None
        except children.KeptChanging:
            raise TargetError(
                "UpdateConflict", f"Deployment {name} kept changing while its template was updated"
            ) from None
        except children.WriteFailed as e:
            raise TargetError(
                e.error.condition_reason(invalid="InvalidTemplate"),
                f"{e.action} Deployment {name} failed: {e.error}",
            ) from None
        return outcome.verb or "unchanged", _scale_of(outcome.live)

    def retire_deployment(self, namespace: str, name: str, owner_uid: str, keep: bool) -> str | None:
        """After a switch from ``template`` to ``scaleTargetRef``: the Deployment this ScaledApp
        owned is deleted, or, when the new ``scaleTargetRef`` names it (``keep``), released — its
        owner reference to the ScaledApp removed, so it lives on as the user's workload. Returns
        ``deleted``, ``released`` or None (no such owned Deployment)."""
        live = self.transport.get(_deployments(namespace, name))
        if live is None or not is_controlled_by(live, owner_uid):
            return None
        if not keep:
            self.transport.request(
                "DELETE",
                _deployments(namespace, name),
                body={"preconditions": {"uid": live["metadata"]["uid"]}},
            )
            return "deleted"
        refs = [r for r in live["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
        version = live["metadata"]["resourceVersion"]
        self.transport.json_patch(
            _deployments(namespace, name),
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": version},
                {"op": "replace", "path": "/metadata/ownerReferences", "value": refs},
            ],
        )
        return "released"

    def list_scaledapps(self, namespace: str) -> list[dict[str, Any]]:
        """Every ScaledApp of ``namespace`` as the API server has it now."""
        listing = self.transport.request("GET", path(GROUP, VERSION, SCALEDAPPS, namespace))
        return list(listing.get("items") or [])

    def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        kube_status.patch_status(
            self.transport, path(GROUP, VERSION, SCALEDAPPS, namespace, name), {"status": dict(patch)}
        )

    def post_event(self, body: kopf.Body, type_: str, reason: str, message: str) -> None:
        (kopf.warn if type_ == "Warning" else kopf.info)(body, reason=reason, message=message)
