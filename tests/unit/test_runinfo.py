"""The first line of ``kopfscale run``: where, what scope, which peering and endpoints."""

from __future__ import annotations

import pytest

from kopfscale import runinfo


def test_the_line_names_cluster_scope_peering_and_endpoints() -> None:
    line = runinfo.summary(
        context="prod-eu", server="https://10.0.0.1:6443", clusterwide=True, namespaces=(),
        standalone=False, peering_name="kopfscale", priority=None,
        metrics="http://127.0.0.1:8081/metrics", liveness=None,
    )  # fmt: skip
    assert line == (
        "kopfscale: cluster prod-eu (https://10.0.0.1:6443); scope all namespaces; "
        "peering kopfscale (priority 0); metrics http://127.0.0.1:8081/metrics; liveness off"
    )


def test_namespaces_and_standalone_are_spelled_out() -> None:
    assert runinfo.scope_text(False, ("a", "b")) == "namespaces a, b"
    assert runinfo.peering_text(True, "x", 5).startswith("standalone (no peering")
    assert runinfo.peering_text(False, None, 3) == "peering default (priority 3)"


def test_in_cluster_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert runinfo.current_cluster() == (runinfo.IN_CLUSTER, "https://10.96.0.1:443")
