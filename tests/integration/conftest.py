"""Fixtures of the integration tests that run the operator as a process on a control plane of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Cluster
from tests.integration.running_operator import Api


@pytest.fixture()
def faults_ns(isolated_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "faults-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[-40:].strip("-")
    isolated_cluster.kubectl("create", "namespace", name)
    yield name
    isolated_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture()
def admin(isolated_cluster: Cluster) -> Api:
    return Api(isolated_cluster.kubeconfig)
