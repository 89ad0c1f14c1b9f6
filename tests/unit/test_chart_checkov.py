"""checkov on the rendered manifests (every chart shape, and deploy/) and on the Dockerfile.

No check may fail; the few that do not apply are skipped in place with a written reason
(``checkov.io/skipN`` annotations in the chart, ``# checkov:skip=`` lines in the Dockerfile), and
this test reads those reasons back: a skip without one fails.

checkov lives in its own venv (its pins conflict with the kubernetes client's and pytest's):
tools/image/install-checkov.sh makes it once; .ci/run calls it during setup.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kopfscale_devcluster.binaries import REPO_ROOT

from .test_chart import DEPLOY, VARIANTS, render

INSTALLER = REPO_ROOT / "tools" / "image" / "install-checkov.sh"


@pytest.fixture(scope="module")
def checkov() -> str:
    explicit = os.environ.get("KOPFSCALE_CHECKOV")
    if explicit:
        return explicit
    result = subprocess.run(
        ["bash", str(INSTALLER)], check=False, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"installing checkov failed:\n{result.stderr[-3000:]}"
    return result.stdout.strip().splitlines()[-1]


def run_checkov(checkov: str, *args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [checkov, *args, "--output", "json", "--skip-download", "--compact"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-2000:]
    loaded = json.loads(result.stdout or "[]")
    reports = loaded if isinstance(loaded, list) else [loaded]
    return [r for r in reports if isinstance(r, dict) and "results" in r]


def assert_clean(reports: list[dict[str, Any]]) -> None:
    assert reports, "checkov scanned nothing"
    failed = [
        f"{c['check_id']} {c['check_name']} on {c['resource']} ({c.get('file_path')})"
        for report in reports
        for c in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    for report in reports:
        for c in report["results"]["skipped_checks"]:
            reason = (c.get("check_result") or {}).get("suppress_comment") or ""
            assert len(reason.split()) >= 4, f"{c['check_id']} on {c['resource']} is skipped without a reason"


def test_rendered_manifests_pass_checkov(checkov: str, tmp_path: Path) -> None:
    for variant, args in VARIANTS.items():
        (tmp_path / f"{variant}.yaml").write_text(render(*args))
    for sub in ("kubernetes", "namespaced"):
        (tmp_path / f"deploy-{sub}.yaml").write_text((DEPLOY / sub / "kopfscale.yaml").read_text())
    assert_clean(run_checkov(checkov, "--directory", str(tmp_path), "--framework", "kubernetes"))


def test_dockerfile_passes_checkov(checkov: str) -> None:
    assert_clean(run_checkov(checkov, "--file", str(REPO_ROOT / "Dockerfile"), "--framework", "dockerfile"))
