"""Every ScaledApp's autoscaler, kept for the one scheduler (:mod:`scheduler`).

The kopf handlers (:mod:`handlers`) tell this registry what the watches see; it keeps one
:class:`~kopfscale.scaledapp.autoscaler.Autoscaler` per ScaledApp and wakes it when its decision may
have changed, so that it acts within a second rather than at its next ``pollingInterval``:

- a ScaledApp appears: its first round runs now; its spec changes (``metadata.generation``: a
  pause, a new target, new metrics): woken; it is deleted (or marked for deletion): forgotten and
  its round in flight cancelled, so it never scales again, and its ``/metrics`` series go with it;
- another autoscaler of the same workload appears, moves or goes away (a ScaledApp, an HPA, a KEDA
  ScaledObject through its HPA): every ScaledApp of that workload is woken (the conflict is decided
  in the round, :mod:`conflicts`);
- an owned Deployment changes hands or is deleted: its ScaledApp is woken.

The body each autoscaler reads is a trimmed copy of the last one seen (identity, spec, status and the
annotations it reads), not kopf's: ``managedFields`` and kopf's own bookkeeping annotations (a copy
of the spec) would only cost memory, once per ScaledApp.

When this replica starts acting again after standing by (kopf peering), another one acted
meanwhile and the watches were paused: :meth:`Rounds.resync` re-reads the ScaledApps and each
autoscaler starts again from what the other replica left in status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf

from kopfscale import metrics as operator_metrics
from kopfscale.scaledapp import conflicts, flapping
from kopfscale.scaledapp.autoscaler import Autoscaler
from kopfscale.scheduler import Scheduler

#: Rounds running at once (a task each, started when due). A round waits for its status write
#: while ``/scale`` writes go first (:class:`~kopfscale.scaledapp.autoscaler.ScaleFirst`), on an
#: event, not a thread: a round of a fleet of thousands starts when due, and the threads under
#: the blocking calls (``autoscaler.SCALE_THREADS``, ``app.IO_THREADS``) bound the API traffic.
WORKERS = 2048
#: The metadata an autoscaler reads of its ScaledApp.
_METADATA = ("name", "namespace", "uid", "generation", "creationTimestamp", "resourceVersion")
Lister = Callable[[str], list[dict[str, Any]]]  # namespace -> its ScaledApps (blocking)


def trim(body: Mapping[str, Any]) -> kopf.Body:
    """What a round reads of a ScaledApp (and kopf needs to post an event about it)."""
    meta = body.get("metadata") or {}
    kept: dict[str, Any] = {k: meta[k] for k in _METADATA if meta.get(k) is not None}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in flapping.ANNOTATIONS}
    if annotations:
        kept["annotations"] = annotations
    raw = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": kept,
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }
    return kopf.Body(cast(kopf.RawBody, raw))


def _uid(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("uid"))


class Rounds:
    """The ScaledApps the scheduler runs, and what wakes them."""

    def __init__(self, scheduler: Scheduler, lister: Lister | None = None) -> None:
        self.scheduler = scheduler
        self.lister = lister
        self._targets: dict[str, conflicts.TargetKey | None] = {}  # ScaledApp uid -> its target
        self._by_target: dict[conflicts.TargetKey, set[str]] = {}  # target -> ScaledApp uids
        self._hpas: dict[str, conflicts.TargetKey | None] = {}  # HPA uid -> its target
        self._owners: dict[tuple[str, str], tuple[str, ...]] = {}  # owned Deployment -> owner uids

    def autoscaler(self, uid: str) -> Autoscaler | None:
        return cast(Autoscaler | None, self.scheduler.get(uid))

    # --- ScaledApps ----------------------------------------------------------------------------------
    def seen(self, body: Mapping[str, Any], make: Callable[[kopf.Body], Autoscaler]) -> None:
        """A ScaledApp as the watch shows it now (not deleted)."""
        uid, trimmed = _uid(body), trim(body)
        loop = self.autoscaler(uid)
        if loop is None:
            self.scheduler.add(uid, make(trimmed))
        else:
            changed = loop.body.meta.get("generation") != trimmed.meta.get("generation")
            loop.update_body(trimmed)
            if changed:  # and the others of its workload: it may have started or stopped observing
                self.scheduler.wake(uid, first=True)
                target = self._targets.get(uid)
                if target is not None:
                    self.wake_target(target)
        self._retarget(uid, conflicts.scaledapp_target(trimmed))

    def gone(self, body: Mapping[str, Any]) -> None:
        """A ScaledApp deleted, or marked for deletion: it never scales again."""
        uid, meta = _uid(body), body.get("metadata") or {}
        loop = self.autoscaler(uid)
        if loop is not None:
            loop.close()
        self.scheduler.remove(uid)
        self._retarget(uid, None)
        self._targets.pop(uid, None)
        operator_metrics.forget(str(meta.get("namespace")), str(meta.get("name")))

    def _retarget(self, uid: str, target: conflicts.TargetKey | None) -> None:
        before = self._targets.get(uid)
        self._targets[uid] = target
        if before == target:
            return
        if before is not None:
            self._by_target.get(before, set()).discard(uid)
            if not self._by_target.get(before):
                self._by_target.pop(before, None)
            self.wake_target(before)
        if target is not None:
            self.wake_target(target)  # the others of the new target (this one is woken already)
            self._by_target.setdefault(target, set()).add(uid)

    def wake_target(self, target: conflicts.TargetKey) -> None:
        for uid in list(self._by_target.get(target, ())):
            self.scheduler.wake(uid)

    # --- the other autoscalers and the owned Deployments ------------------------------------------------
    def hpa_seen(self, uid: str, target: conflicts.TargetKey | None) -> None:
        """An HPA appeared, moved to another target or went away (``target`` None)."""
        before = self._hpas.get(uid)
        if target is None:
            self._hpas.pop(uid, None)
        else:
            self._hpas[uid] = target
        if before != target:
            for key in {before, target} - {None}:
                self.wake_target(cast(conflicts.TargetKey, key))

    def deployment_seen(self, namespace: str, name: str, owners: tuple[str, ...] | None) -> None:
        """A Deployment labelled as a ScaledApp's changed owners or went away (``owners`` None)."""
        key = (namespace, name)
        before = self._owners.get(key)
        if owners is None:
            self._owners.pop(key, None)
        else:
            self._owners[key] = owners
        if before != owners:
            self.wake_target((namespace, "apps", "Deployment", name))

    # --- after standing by ----------------------------------------------------------------------------
    async def resync(self) -> None:
        """Re-read every ScaledApp this replica knows: the deleted ones are forgotten, the others
        start again from their status as it is now (another replica wrote it meanwhile)."""
        if self.lister is None:
            return
        namespaces = {
            str(loop.body.meta.get("namespace"))
            for key in self.scheduler
            if (loop := self.autoscaler(str(key))) is not None
        }
        for namespace in sorted(namespaces):
            try:
                listed = await asyncio.to_thread(self.lister, namespace)
            except Exception as e:  # the watches catch up anyway; this only speeds it up
                self.scheduler.logger.warning(f"could not re-read the ScaledApps of {namespace}: {e}")
                continue
            current = {_uid(body): body for body in listed}
            for key in list(self.scheduler):
                loop = self.autoscaler(str(key))
                if loop is None or loop.namespace != namespace:
                    continue
                body = current.get(str(key))
                if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
                    self.gone(loop.body)
                else:
                    loop.restore(trim(body))
                    self.scheduler.wake(key)
