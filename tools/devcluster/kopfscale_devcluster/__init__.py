"""A local Kubernetes control plane for development and tests.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as local processes
built from the official Go modules (``tools/controlplane/build.sh``), the way kubebuilder's
envtest and kwokctl do, because this project is tested where Docker and kind are unavailable.
"""

from kopfscale_devcluster.cluster import LocalCluster

__all__ = ["LocalCluster"]
