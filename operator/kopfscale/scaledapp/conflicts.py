"""One autoscaler per workload: who else drives a ScaledApp's target, and who yields. Pure.

Two autoscalers on one workload fight (each undoes the other's count every round) and both say
``Ready``. So every autoscaler of a workload is indexed by its target (kopf indexes of ScaledApps,
HorizontalPodAutoscalers and, when KEDA is installed, ScaledObjects), and a ScaledApp acts only
when it is the workload's one autoscaler:

- an HPA or a KEDA ScaledObject on the same target always wins (they cannot be asked to yield):
  the ScaledApp is ``Ready=False`` reason ``Conflict``, naming it, and never writes the target.
  KEDA drives a workload through an HPA it creates and controls, so KEDA is found through that
  HPA's owner reference: nothing needs KEDA's CRD to be installed, or to be watched;
- among ScaledApps the oldest (``creationTimestamp``) keeps acting, the others yield. Timestamps
  have one-second precision: within a second the one already acting keeps acting, then the name
  decides, so exactly one acts and a newcomer never takes over;
- a ScaledApp in ``mode: Observe`` never writes its target, so it conflicts with nobody: it may
  shadow an HPA, a KEDA ScaledObject or another ScaledApp on the same workload (that is what
  Observe is for: see what kopfscale would do beside what drives the workload now), and it never
  makes an acting ScaledApp yield.

The conflict clears by itself when the other goes away: the next round finds nobody else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: (namespace, API group, kind, name) of a scaled workload.
TargetKey = tuple[str, str, str, str]


@dataclass(frozen=True, order=True)
class Autoscaler:
    """One autoscaler of a workload, as indexed: enough to name it and to order ScaledApps."""

    created: str  # RFC 3339 creationTimestamp: sorts as time
    kind: str  # ScaledApp, HorizontalPodAutoscaler, ScaledObject
    name: str
    uid: str
    acting: bool = False  # a ScaledApp whose status says it scales its target (Ready=True)
    observing: bool = False  # a ScaledApp in mode Observe: it never writes the target

    def rank(self) -> tuple[str, bool, str]:
        """Older first; within one second, the one acting first; then by name."""
        return (self.created, not self.acting, self.name)

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


def _group(api_version: Any) -> str:
    return str(api_version or "").rpartition("/")[0]


def key_of_ref(namespace: str, ref: Mapping[str, Any] | None) -> TargetKey | None:
    """The target of an HPA/ScaledObject-style ``scaleTargetRef`` (apiVersion, kind, name)."""
    if not isinstance(ref, Mapping) or not ref.get("name"):
        return None
    kind = ref.get("kind")
    if not kind:
        return None
    api_version = ref.get("apiVersion") or ("apps/v1" if kind in ("Deployment", "StatefulSet") else "")
    return (namespace, _group(api_version), str(kind), str(ref["name"]))


def scaledapp_target(body: Mapping[str, Any]) -> TargetKey | None:
    """What a ScaledApp scales: its own Deployment (``template``) or its ``scaleTargetRef``."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    namespace = str(meta.get("namespace"))
    if spec.get("template") is not None:
        return (namespace, "apps", "Deployment", str(meta.get("name")))
    ref = spec.get("scaleTargetRef")
    if isinstance(ref, Mapping):
        ref = {"apiVersion": "apps/v1", "kind": "Deployment", **ref}
    return key_of_ref(namespace, ref)


def hpa_target(body: Mapping[str, Any]) -> TargetKey | None:
    meta = body.get("metadata") or {}
    return key_of_ref(str(meta.get("namespace")), (body.get("spec") or {}).get("scaleTargetRef"))


def _is_acting(body: Mapping[str, Any]) -> bool:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def entry(kind: str, body: Mapping[str, Any]) -> Autoscaler:
    meta = body.get("metadata") or {}
    created, name, uid = str(meta.get("creationTimestamp") or ""), str(meta.get("name")), str(meta.get("uid"))
    scaledapp = kind == "ScaledApp"
    observing = scaledapp and (body.get("spec") or {}).get("mode") == "Observe"
    return Autoscaler(created, kind, name, uid, acting=scaledapp and _is_acting(body), observing=observing)


def hpa_entry(body: Mapping[str, Any]) -> Autoscaler:
    """An HPA, or the KEDA ScaledObject that controls it (KEDA scales through an HPA of its own)."""
    meta = body.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if (
            ref.get("controller")
            and ref.get("kind") == "ScaledObject"
            and _group(ref.get("apiVersion")) == "keda.sh"
        ):
            created = str(meta.get("creationTimestamp") or "")
            return Autoscaler(created, "ScaledObject", str(ref.get("name")), str(ref.get("uid")))
    return entry("HorizontalPodAutoscaler", body)


def driver(me: Autoscaler, others: Iterable[Autoscaler]) -> Autoscaler | None:
    """Whoever else drives the target ``me`` scales or observes: an HPA or ScaledObject first, else
    the ScaledApp ahead of ``me`` (observers never drive anything); None: nobody but ``me``."""
    rivals = [o for o in others if o.uid != me.uid and not o.observing]
    foreign = sorted(o for o in rivals if o.kind != "ScaledApp")
    if foreign:
        return foreign[0]
    ahead = sorted((o for o in rivals if me.observing or o.rank() < me.rank()), key=Autoscaler.rank)
    return ahead[0] if ahead else None


def winner(me: Autoscaler, others: Iterable[Autoscaler]) -> Autoscaler | None:
    """The autoscaler this ScaledApp yields to, or None when it is the one that acts (an observer
    yields to nobody: it writes nothing)."""
    return None if me.observing else driver(me, others)


def message(target: str, other: Autoscaler) -> str:
    if other.kind == "ScaledApp":
        return (
            f"{target} is already scaled by the older ScaledApp {other.name}; this one does not scale it "
            "(one autoscaler per workload). Delete one of them."
        )
    return (
        f"{target} is already scaled by the {other.describe()}; this ScaledApp does not scale it "
        "(one autoscaler per workload). Delete one of them."
    )
