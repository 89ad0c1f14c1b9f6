"""What ships: the operator's wheel (what the image installs) holds the operator and the greeting
server, never the local control plane or test tooling; without the dev package, the development
commands say what they are instead of failing with a traceback.

The wheel is built offline from exactly the image's build context (the files .dockerignore lets
through), with the project's own build backend, as the Dockerfile's ``pip install .`` would.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kopfscale_devcluster.binaries import REPO_ROOT


def docker_context() -> list[str]:
    """The paths .dockerignore lets into the build context (it must be an allow-list)."""
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert lines[0] == "*", "the .dockerignore must start by excluding everything"
    return [line[1:].rstrip("/") for line in lines[1:] if line.startswith("!")]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    source = tmp_path_factory.mktemp("context")
    for name in docker_context():
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(
                origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
            )
        else:
            shutil.copy2(origin, source / name)
    out = tmp_path_factory.mktemp("wheel")
    build = "import sys\nfrom setuptools import build_meta\nprint(build_meta.build_wheel(sys.argv[1]))"
    result = subprocess.run(
        [sys.executable, "-c", build, str(out)], cwd=source, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    wheel = out / result.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_image_build_context_is_the_package_sources_only() -> None:
    assert sorted(docker_context()) == ["README.md", "operator", "pyproject.toml"]
    top = sorted(p.name for p in (REPO_ROOT / "operator").iterdir() if not p.name.endswith(".egg-info"))
    assert [n for n in top if n != "__pycache__"] == ["kopfscale", "kopfscale_greeting"]


def test_the_wheel_holds_the_operator_and_the_greeting_server(wheel_names: list[str]) -> None:
    assert "kopfscale/cli.py" in wheel_names
    assert "kopfscale/app.py" in wheel_names
    assert "kopfscale_greeting/server.py" in wheel_names
    top_level = {name.split("/")[0] for name in wheel_names}
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"kopfscale", "kopfscale_greeting"}


def test_the_wheel_holds_no_control_plane_and_no_test_tooling(wheel_names: list[str]) -> None:
    forbidden = ("devcluster", "tests/", "test_", "conftest", "bench/", "tools/")
    assert [name for name in wheel_names if any(word in name for word in forbidden)] == []
    metadata = next(n for n in wheel_names if n.endswith(".dist-info/METADATA"))
    assert metadata.startswith("kopfscale-")


@pytest.mark.parametrize(
    "args", [["up"], ["down"], ["reachable"], ["kubectl", "version"]], ids=lambda a: a[0]
)
def test_cluster_commands_without_the_dev_package_say_they_are_for_development(
    args: list[str], tmp_path: Path
) -> None:
    """As in the image: ``kopfscale_devcluster`` cannot be imported. One line, exit status 2."""
    hide = (
        "import sys\n"
        "sys.modules['kopfscale_devcluster'] = None\n"
        "from kopfscale.cli import main\n"
        "sys.argv[0] = 'kopfscale'\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide, "cluster", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "a development command" in lines[0]
    assert "Traceback" not in result.stderr
