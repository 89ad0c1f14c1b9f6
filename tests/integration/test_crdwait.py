"""At startup the operator waits for CRDs to be Established, saying so once, instead of errors."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest

from kopfscale import crdwait, kube
from tests.conftest import Cluster

pytestmark = pytest.mark.integration


def throwaway_crd(group: str) -> dict[str, object]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "description": "A test widget."}},
                }
            ],
        },
    }


def test_the_installed_crds_pass_at_once(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    kube.reset()
    logger = logging.getLogger("test.crdwait")
    with caplog.at_level(logging.INFO, logger="test.crdwait"):
        assert asyncio.run(crdwait.wait_for_crds(logger)) is True
    assert caplog.messages == []


def test_waits_until_a_crd_is_installed_and_established(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    kube.reset()
    group = f"crdwait-{uuid.uuid4().hex[:6]}.test.kopfscale.dev"
    body = throwaway_crd(group)
    name = f"widgets.{group}"
    logger = logging.getLogger("test.crdwait")

    async def scenario() -> bool:
        waiter = asyncio.create_task(crdwait.wait_for_crds(logger, names=[name], poll=0.2))
        await asyncio.sleep(1.0)
        assert not waiter.done(), "returned before the CRD existed"
        await asyncio.to_thread(cluster.kubectl, "apply", "-f", "-", input=json.dumps(body))
        return await asyncio.wait_for(waiter, timeout=60)

    try:
        with caplog.at_level(logging.INFO, logger="test.crdwait"):
            assert asyncio.run(scenario()) is True
    finally:
        cluster.kubectl("delete", "crd", name, "--wait=false", check=False)
    assert caplog.messages[0] == (
        f"Waiting for the CRDs: {name} not installed (install them: kubectl apply --server-side -f crds/)"
    )
    assert caplog.messages[-1] == f"The CRDs are established and served: {name}."
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
