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
    # KEDA, started only with peers on: its operator, its metrics API server, and keda_dir/crds/ and
    # keda_dir/rbac/ (manifests taken from the same Go module by build.sh).
    keda: Path
    keda_adapter: Path
    keda_dir: Path

    @property
    def bin_dirs(self) -> list[Path]:
        return sorted({p.parent for name, p in vars(self).items() if not name.endswith("_dir")})

    def components(self) -> dict[str, list[Path]]:
        """build.sh's component names and the files that must exist for each to count as built."""
        return {
            "etcd": [self.etcd],
            "kwok": [self.kwok],
            "helm": [self.helm],
            "metrics-server": [self.metrics_server],
            "kubernetes": [
                self.kube_apiserver,
                self.kube_controller_manager,
                self.kube_scheduler,
                self.kubectl,
            ],
            "keda": [
                self.keda,
                self.keda_adapter,
                self.keda_dir / "crds" / ".complete",
                self.keda_dir / "rbac" / ".complete",
            ],
        }


def locate() -> Binaries:
    v = pinned_versions()
    root = cache_root()
    k8s = root / f"kubernetes-{v['KUBERNETES_VERSION']}" / "bin"
    keda = root / f"keda-{v['KEDA_VERSION']}"
    return Binaries(
        etcd=root / f"etcd-{v['ETCD_VERSION']}" / "bin" / "etcd",
        kube_apiserver=k8s / "kube-apiserver",
        kube_controller_manager=k8s / "kube-controller-manager",
        kube_scheduler=k8s / "kube-scheduler",
        kubectl=k8s / "kubectl",
        kwok=root / f"kwok-{v['KWOK_VERSION']}" / "bin" / "kwok",
        helm=root / f"helm-{v['HELM_VERSION']}" / "bin" / "helm",
        metrics_server=root / f"metrics-server-{v['METRICS_SERVER_VERSION']}" / "bin" / "metrics-server",
        keda=keda / "bin" / "keda",
        keda_adapter=keda / "bin" / "keda-adapter",
        keda_dir=keda,
    )


def ensure_built(peers: bool = False) -> Binaries:
    """Build whatever is missing from the cache (a no-op when the cache is warm); KEDA only when
    ``peers`` asks for it, so a plain control plane never waits for KEDA's build."""
    binaries = locate()
    missing = [
        name
        for name, paths in binaries.components().items()
        if (peers or name != "keda") and not all(p.exists() for p in paths)
    ]
    if missing:
        subprocess.run(["bash", str(BUILD_SCRIPT), *missing], check=True)
    return binaries
