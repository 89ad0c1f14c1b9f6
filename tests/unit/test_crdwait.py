"""The startup wait's pure part: which CRDs are not usable yet, and why."""

from __future__ import annotations

from typing import Any

from kopfscale import crdwait


def crd(established: str | None) -> dict[str, Any]:
    conditions = [{"type": "NamesAccepted", "status": "True"}]
    if established is not None:
        conditions.append({"type": "Established", "status": established})
    return {"status": {"conditions": conditions}}


def test_established_needs_the_condition_true() -> None:
    assert crdwait.is_established(crd("True"))
    assert not crdwait.is_established(crd("False"))
    assert not crdwait.is_established(crd(None))
    assert not crdwait.is_established({})


def test_pending_says_why() -> None:
    found = {"a.x": crd("True"), "b.x": crd("False")}
    assert crdwait.pending(["a.x", "b.x", "c.x"], found) == {
        "b.x": "not established yet",
        "c.x": "not installed",
    }
    assert crdwait.pending(["a.x"], found) == {}


def test_the_operator_waits_for_both_crds() -> None:
    assert crdwait.CRDS == ("greeters.kopfscale.dev", "scaledapps.kopfscale.dev")


def test_the_resource_is_the_served_storage_version() -> None:
    crd = {
        "spec": {
            "group": "x.dev",
            "names": {"plural": "things"},
            "versions": [
                {"name": "v1beta1", "served": True},
                {"name": "v1", "served": True, "storage": True},
            ],
        }
    }
    assert crdwait.resource_of(crd) == ("x.dev", "v1", "things")
