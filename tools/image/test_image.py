"""The built image, run for real (podman) against the local control plane: it must reconcile a Greeter.

Run by ``make image-test`` (after ``make image``), not by ``make test``: it needs podman, runc
and root features CI does not have. The container runs the way the chart runs the Pod: its
default user (UID 10001), a read-only root filesystem with a tmpfs /tmp, every capability
dropped, no privilege escalation, and only the token of the chart's ServiceAccount.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
from tests.conftest import Cluster
from tests.helpers import wait_for
from tests.integration.test_rbac_operator import (
    chart_rbac,
    free_port,
    greeter_scenario,
    token_kubeconfig,
)

HERE = Path(__file__).resolve().parent
PODMAN = ["bash", str(HERE / "podman.sh")]
IMAGE = os.environ.get("KOPFSCALE_IMAGE", "localhost/kopfscale:0.1.0")

pytestmark = pytest.mark.integration


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False)


class Container:
    """Just enough of an operator handle for the shared scenarios (they print its log on failure)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def output(self) -> str:
        result = podman("logs", self.name)
        return result.stdout + result.stderr


def test_image_runs_as_non_root_with_only_the_runtime() -> None:
    inspect = podman("image", "inspect", IMAGE)
    assert inspect.returncode == 0, f"build the image first (make image): {inspect.stderr}"
    config = json.loads(inspect.stdout)[0]["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["kopfscale"]
    probe = podman(
        "run",
        "--rm",
        "--read-only",
        "--entrypoint",
        "/opt/kopfscale/bin/python",
        IMAGE,
        "-c",
        "import os, shutil, importlib.util as u; print(os.getuid(), shutil.which('gcc'), shutil.which('pip'),"
        " u.find_spec('pip'), u.find_spec('pytest'), os.path.exists('/root/.cache/pip'))",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["10001", "None", "None", "None", "None", "False"]
    version = podman("run", "--rm", "--read-only", IMAGE, "--version")
    assert version.returncode == 0 and "0.1.0" in version.stdout, version.stdout + version.stderr


def test_image_reconciles_a_greeter(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    with chart_rbac(cluster, namespace) as sa:
        release = sa.removesuffix("-kopfscale")
        kubeconfig = token_kubeconfig(cluster, namespace, sa, tmp_path / "kubeconfig")
        kubeconfig.chmod(0o644)
        name = f"kopfscale-image-test-{uuid.uuid4().hex[:6]}"
        health, metrics = free_port(), free_port()
        started = podman(
            "run",
            "--detach",
            "--name",
            name,
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--volume",
            f"{kubeconfig}:/etc/kopfscale/kubeconfig:ro",
            "--env",
            "KUBECONFIG=/etc/kopfscale/kubeconfig",
            "--env",
            f"KOPFSCALE_METRICS_PORT={metrics}",
            IMAGE,
            "run",
            "--all-namespaces",
            f"--peering={release}",
            f"--liveness=http://127.0.0.1:{health}/healthz",
            "--log-format=json",
        )
        assert started.returncode == 0, started.stderr
        container = Container(name)
        try:
            wait_for(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2).status == 200,
                timeout=60,
                what=f"the container's liveness endpoint; log:\n{container.output()[-3000:]}",
            )
            greeter_scenario(cluster, namespace, container)  # type: ignore[arg-type]
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as r:
                assert 'resource="greeters"' in r.read().decode()
            # --log-format=json: every line the operator logs is a JSON object.
            lines = [line for line in container.output().splitlines() if line.strip()]
            assert lines and all(json.loads(line) for line in lines if line.startswith("{"))
            assert any('"message"' in line for line in lines)
        finally:
            podman("rm", "--force", "--time", "10", name)
        cluster.kubectl("delete", "greeter", "--all", "-n", namespace, "--wait=false")
