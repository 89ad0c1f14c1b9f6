"""Shared fixtures: one real local control plane per test session, operators per test.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) is
started once for the session and stopped at its end. To iterate faster during development,
point ``KOPFSCALE_TEST_KUBECONFIG`` at a running one (``make cluster-up``) and it is reused.
In CI (``CI=true``) nothing is ever skipped: a missing component is a failure.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykube
import pytest
from kopf.testing import KopfRunner

from kopfscale import kube
from kopfscale_devcluster import LocalCluster
from kopfscale_devcluster.binaries import REPO_ROOT, locate

from .helpers import wait_for

CRDS_DIR = REPO_ROOT / "crds"


@dataclass
class Cluster:
    kubeconfig: Path
    env: dict[str, str]
    local: LocalCluster | None = None

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args],
            input=input,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result


def _install_crds(cluster: Cluster) -> None:
    crds = sorted(CRDS_DIR.glob("*.yaml"))
    if not crds:
        return
    args = [a for crd in crds for a in ("-f", str(crd))]
    cluster.kubectl("apply", "--server-side", "--force-conflicts", *args)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *args)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    reuse = os.environ.get("KOPFSCALE_TEST_KUBECONFIG")
    local: LocalCluster | None = None
    if reuse:
        kubeconfig = Path(reuse).resolve()
        bin_dirs = locate().bin_dirs
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PATH": os.pathsep.join([*map(str, bin_dirs), os.environ["PATH"]]),
        }
    else:
        local = LocalCluster().start()
        kubeconfig, env = local.kubeconfig, local.env()
    saved = {k: os.environ.get(k) for k in ("KUBECONFIG", "PATH")}
    os.environ["KUBECONFIG"], os.environ["PATH"] = env["KUBECONFIG"], env["PATH"]
    kube.reset()
    handle = Cluster(kubeconfig=kubeconfig, env=env, local=local)
    try:
        _install_crds(handle)
        yield handle
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if local is not None:
            local.stop()


@pytest.fixture(scope="session")
def peers(cluster: Cluster) -> Cluster:
    """The session's control plane with KEDA on it (operator + ``external.metrics.k8s.io``), started
    the first time a test asks for it. A reused cluster (``KOPFSCALE_TEST_KUBECONFIG``) must have
    been started with ``make cluster-up PEERS=1``."""
    if cluster.local is not None:
        cluster.local.start_peers()
    elif cluster.kubectl("get", "apiservice", "v1beta1.external.metrics.k8s.io", check=False).returncode != 0:
        pytest.skip("the reused cluster runs without KEDA: start it with make cluster-up PEERS=1")
    return cluster


@pytest.fixture(scope="module")
def isolated_cluster() -> Iterator[Cluster]:
    """A control plane of the test module's own (no metrics-server), with crds/ installed, for
    tests that break it: stop, restart or freeze a component (``isolated_cluster.local``), or put
    a blackholing proxy in front of its apiserver (``local.proxy()``). The session's ``cluster``
    stays healthy for every other test. It does not change KUBECONFIG: pass ``.kubeconfig``."""
    local = LocalCluster(metrics_server=False).start()
    handle = Cluster(kubeconfig=local.kubeconfig, env=local.env(), local=local)
    try:
        _install_crds(handle)
        yield handle
    finally:
        local.stop()


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> pykube.HTTPClient:
    return pykube.HTTPClient(pykube.KubeConfig.from_file(str(cluster.kubeconfig)))


@pytest.fixture()
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
        what=f"the default ServiceAccount in {name}",
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


OperatorFactory = Callable[..., contextlib.AbstractContextManager[KopfRunner]]


@pytest.fixture()
def operator_factory(cluster: Cluster, namespace: str) -> OperatorFactory:
    """Start kopfscale as kopf would in production, in-process, watching the test namespace."""

    @contextlib.contextmanager
    def run(*extra_args: str, namespaces: tuple[str, ...] | None = None, **_: Any) -> Iterator[KopfRunner]:
        kube.reset()
        ns_args = [a for ns in (namespaces or (namespace,)) for a in ("--namespace", ns)]
        args = ["run", "--standalone", *ns_args, "--verbose", "-m", "kopfscale.app", *extra_args]
        with KopfRunner(args, timeout=60) as runner:
            yield runner
        assert runner.exception is None, runner.output
        assert runner.exit_code == 0, runner.output

    return run


@pytest.fixture()
def operator(operator_factory: OperatorFactory) -> Iterator[KopfRunner]:
    with operator_factory() as runner:
        yield runner


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a skipped test is a failed test: a missing component must never pass quietly."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"
