"""Where the control-plane binaries are: the versioned cache filled by tools/controlplane/build.sh."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The package is installed editable from tools/devcluster/ of a source checkout (it needs build.sh
# and versions.env beside it), so the checkout is three folders up.
REPO_ROOT = Path(__file__).resolve().parents[3]
VERSIONS_FILE = REPO_ROOT / "tools" / "controlplane" / "versions.env"
BUILD_SCRIPT = REPO_ROOT / "tools" / "controlplane" / "build.sh"


def cache_root() -> Path:
    return Path(os.environ.get("KOPFSCALE_CACHE", Path.home() / ".cache" / "kopfscale"))


def pinned_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    helm: Path
    metrics_server: Path

    @property
    def bin_dirs(self) -> list[Path]:
        return sorted({p.parent for p in vars(self).values()})


def locate() -> Binaries:
    v = pinned_versions()
    root = cache_root()
    k8s = root / f"kubernetes-{v['KUBERNETES_VERSION']}" / "bin"
    return Binaries(
        etcd=root / f"etcd-{v['ETCD_VERSION']}" / "bin" / "etcd",
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        kube_scheduler=k8s / "kube-scheduler",
        kubectl=k8s / "kubectl",
        kwok=root / f"kwok-{v['KWOK_VERSION']}" / "bin" / "kwok",
        helm=root / f"helm-{v['HELM_VERSION']}" / "bin" / "helm",
        metrics_server=root / f"metrics-server-{v['METRICS_SERVER_VERSION']}" / "bin" / "metrics-server",
    )


def ensure_built() -> Binaries:
    """Build whatever is missing from the cache (a no-op when the cache is warm)."""
    binaries = locate()
    if not all(p.exists() for p in vars(binaries).values()):
        subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)
    return binaries
