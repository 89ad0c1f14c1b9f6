"""Getting the image to a cluster: ``make image-push`` pushes with buildah (the tool ``make
image`` builds with), and the chart and the plain manifests take the image from one place
(values.yaml image.repository/tag; ``make manifests`` renders the plain ones for yours).

buildah itself is replaced by a recording stub on PATH: the test checks what is pushed where,
never contacts a registry."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kopfscale_devcluster.binaries import REPO_ROOT

VERSION = re.search(r'^version = "(.+)"', (REPO_ROOT / "pyproject.toml").read_text(), re.M)[1]  # type: ignore[index]


@pytest.fixture(autouse=True)
def leave_etc_containers_alone() -> Iterator[None]:
    """tools/image/lib.sh writes a permissive /etc/containers/policy.json when there is none (the
    image tools need one); a unit test must leave the machine as it found it."""
    policy = Path("/etc/containers/policy.json")
    existed = policy.exists()
    yield
    if not existed and policy.exists():
        policy.unlink()
        if not any(policy.parent.iterdir()):
            policy.parent.rmdir()


def fake_buildah(tmp_path: Path) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    stub = bin_dir / "buildah"
    stub.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    stub.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "KOPFSCALE_CACHE": str(tmp_path),
    }
    return env, calls


def make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_image_push_pushes_the_built_image_with_buildah(tmp_path: Path) -> None:
    env, calls = fake_buildah(tmp_path)
    result = make("image-push", "REGISTRY=127.0.0.1:5000/team/", "TAG=0.2.0", env=env)
    assert result.returncode == 0, result.stderr
    pushed = calls.read_text().splitlines()[-1]
    assert (
        pushed
        == f"push --tls-verify=true localhost/kopfscale:{VERSION} docker://127.0.0.1:5000/team/kopfscale:0.2.0"
    )
    assert "--set image.repository=127.0.0.1:5000/team/kopfscale --set image.tag=0.2.0" in result.stdout
    assert "make manifests REGISTRY=127.0.0.1:5000/team TAG=0.2.0" in result.stdout


def test_image_push_demands_registry_and_tag(tmp_path: Path) -> None:
    env, calls = fake_buildah(tmp_path)
    result = make("image-push", "TAG=0.2.0", env=env)
    assert result.returncode != 0
    assert "usage: make image-push REGISTRY=<host[/path]> TAG=<tag>" in result.stderr
    assert not calls.exists() or "push" not in calls.read_text()


def test_manifests_take_the_image_from_one_place(tmp_path: Path) -> None:
    result = make("manifests", "REGISTRY=registry.example.com/team", "TAG=1.2.3", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    for variant in ("kubernetes", "namespaced"):
        docs = list(
            yaml.safe_load_all((REPO_ROOT / "build" / "manifests" / variant / "kopfscale.yaml").read_text())
        )
        (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "registry.example.com/team/kopfscale:1.2.3"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["KOPFSCALE_GREETER_IMAGE"] == "registry.example.com/team/kopfscale:1.2.3"
    committed = (REPO_ROOT / "deploy" / "kubernetes" / "kopfscale.yaml").read_text()
    assert "ghcr.io/kopfscale/kopfscale:0.1.0" in committed, (
        "the committed manifests keep the chart's default"
    )
