"""One autoscaler per workload: who drives a target, and who yields (pure rules)."""

from __future__ import annotations

from typing import Any

from kopfscale.scaledapp import conflicts
from kopfscale.scaledapp.conflicts import Autoscaler


def obj(name: str, created: str, spec: dict[str, Any], uid: str | None = None) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}", "creationTimestamp": created}
    return {"metadata": meta, "spec": spec}


REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
WEB = ("ns", "apps", "Deployment", "web")


def test_targets_of_every_kind_of_autoscaler() -> None:
    assert conflicts.scaledapp_target(obj("web", "t", {"template": {}})) == WEB
    assert conflicts.scaledapp_target(obj("a", "t", {"scaleTargetRef": {"name": "web"}})) == WEB
    assert conflicts.scaledapp_target(obj("a", "t", {"scaleTargetRef": REF})) == WEB
    greeter = {"apiVersion": "kopfscale.dev/v1", "kind": "Greeter", "name": "hello"}
    assert conflicts.hpa_target(obj("h", "t", {"scaleTargetRef": greeter})) == (
        "ns",
        "kopfscale.dev",
        "Greeter",
        "hello",
    )
    assert conflicts.hpa_target(obj("h", "t", {"scaleTargetRef": REF})) == WEB
    assert conflicts.hpa_target(obj("h", "t", {})) is None
    assert conflicts.scaledapp_target(obj("a", "t", {})) is None


def test_alone_it_acts() -> None:
    me = conflicts.entry("ScaledApp", obj("a", "2026-01-01T00:00:00Z", {}))
    assert conflicts.winner(me, [me]) is None
    assert conflicts.winner(me, []) is None


def test_the_oldest_scaledapp_acts_and_the_newer_yields() -> None:
    old = conflicts.entry("ScaledApp", obj("zeta", "2026-01-01T00:00:00Z", {}))
    new = conflicts.entry("ScaledApp", obj("alpha", "2026-01-02T00:00:00Z", {}))
    assert conflicts.winner(old, [old, new]) is None
    assert conflicts.winner(new, [old, new]) == old
    # Same second: the name decides, so exactly one of them acts.
    twin = conflicts.entry("ScaledApp", obj("beta", "2026-01-01T00:00:00Z", {}))
    assert conflicts.winner(old, [old, twin]) == twin
    assert conflicts.winner(twin, [old, twin]) is None


def test_within_one_second_the_acting_one_keeps_acting() -> None:
    acting = obj("owner", "2026-01-01T00:00:00Z", {})
    acting["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    owner = conflicts.entry("ScaledApp", acting)
    newcomer = conflicts.entry("ScaledApp", obj("newcomer", "2026-01-01T00:00:00Z", {}))
    assert owner.acting and not newcomer.acting
    assert conflicts.winner(newcomer, [owner, newcomer]) == owner
    assert conflicts.winner(owner, [owner, newcomer]) is None


def test_keda_is_found_through_the_hpa_it_controls() -> None:
    hpa = obj("keda-hpa-web", "2026-01-01T00:00:00Z", {"scaleTargetRef": REF})
    hpa["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "name": "web",
            "uid": "so-uid",
            "controller": True,
        }
    ]
    assert conflicts.hpa_entry(hpa).describe() == "ScaledObject web"
    assert conflicts.hpa_entry(obj("plain", "t", {})).describe() == "HorizontalPodAutoscaler plain"


def test_an_hpa_or_a_scaledobject_always_wins() -> None:
    me = conflicts.entry("ScaledApp", obj("a", "2020-01-01T00:00:00Z", {}))
    hpa = conflicts.entry("HorizontalPodAutoscaler", obj("web-hpa", "2026-01-01T00:00:00Z", {}))
    so = conflicts.entry("ScaledObject", obj("web-so", "2026-01-01T00:00:00Z", {}))
    assert conflicts.winner(me, [me, hpa]) == hpa
    assert conflicts.winner(me, [me, so]) == so
    assert "HorizontalPodAutoscaler web-hpa" in conflicts.message("Deployment/web", hpa)
    assert "older ScaledApp a" in conflicts.message("Deployment/web", me)


def test_entries_round_trip_through_the_index_packing() -> None:
    from dataclasses import asdict

    from kopfscale.kube import indexes

    entry = conflicts.entry("HorizontalPodAutoscaler", obj("h", "2026-01-01T00:00:00Z", {}))
    assert Autoscaler(**indexes.unpack(indexes.pack(asdict(entry)))) == entry


def test_an_observer_conflicts_with_nobody_and_says_who_scales_the_target() -> None:
    """mode: Observe writes nothing: it may shadow an HPA or an acting ScaledApp, and it never makes
    an acting ScaledApp yield, however old it is."""
    observer = conflicts.entry("ScaledApp", obj("shadow", "2025-01-01T00:00:00Z", {"mode": "Observe"}))
    acting = conflicts.entry("ScaledApp", obj("owner", "2026-01-01T00:00:00Z", {"mode": "Auto"}))
    hpa = conflicts.entry("HorizontalPodAutoscaler", obj("h", "2026-06-01T00:00:00Z", {}))
    assert observer.observing and not acting.observing
    assert conflicts.winner(observer, [observer, acting, hpa]) is None
    assert conflicts.driver(observer, [observer, acting, hpa]) == hpa  # what its status names
    assert conflicts.driver(observer, [observer, acting]) == acting
    assert conflicts.driver(observer, [observer]) is None
    assert conflicts.winner(acting, [observer, acting]) is None  # the older observer does not count
