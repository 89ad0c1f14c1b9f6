"""KEDA on the local control plane (``LocalCluster(peers=True)``): the real peer ScaledApp is held
against, beside the HPA that kube-controller-manager already runs.

How the pieces meet, all on loopback:

* CRDs and RBAC come from the pinned KEDA module itself (build.sh copies ``config/crd/bases`` and
  the operator's and metrics server's RBAC files into ``keda-<version>/crds`` and ``rbac``), so what
  is installed is what KEDA ships, applied with the kubectl built with the control plane.
* Identity: both processes run as the ServiceAccount ``keda/keda-operator``, as KEDA's manifests
  deploy them, with KEDA's own ClusterRoles and bindings; their kubeconfig carries a token from
  the TokenRequest API for that ServiceAccount (:func:`write_kubeconfig`).
* The operator serves its gRPC metrics service on ``127.0.0.1`` with mutual TLS; the metrics API
  server dials it. Both read ``ca.crt``, ``tls.crt``, ``tls.key`` from one certificate directory
  (:func:`issue_certs`): one certificate, signed by the cluster CA, for both ends and both roles.
* The metrics API server serves ``external.metrics.k8s.io`` on ``127.0.0.1`` with that certificate;
  the ``v1beta1.external.metrics.k8s.io`` APIService points at an ExternalName Service ``localhost``
  in ``keda``, exactly the way metrics-server is registered for ``metrics.k8s.io`` (see metrics.py).
* Not loopback-only: the metrics API server's own Prometheus ``/metrics`` (``--port``) listens on
  every interface; KEDA has no flag for its address. It gets a free port and nothing connects to it.

Timing: KEDA polls a trigger every ``pollingInterval`` (default 30 s; tests set a few seconds) and
the HPA controller syncs every ``HPA_SYNC_PERIOD`` (set on kube-controller-manager by
``LocalCluster``, default 15 s upstream).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from kopfscale_devcluster import pki
from kopfscale_devcluster.metrics import Request, apiservice_available, register_apiservice

NAMESPACE = "keda"
SERVICE_ACCOUNT = "keda-operator"
SERVICE_NAME = "keda-metrics-apiserver"
OPERATOR_SERVICE_NAME = "keda-operator"
GROUP = "external.metrics.k8s.io"
APISERVICE_NAME = f"v1beta1.{GROUP}"
TOKEN_SECONDS = 7 * 24 * 3600  # a throwaway cluster lives for a test session or a working day
HPA_SYNC_PERIOD = "5s"


def issue_certs(certs: pki.Pki) -> Path:
    """``pki/keda/{ca.crt,tls.crt,tls.key}``: the layout both KEDA processes read (``--cert-dir``)."""
    sans = ",".join(
        f"DNS:{name}.{NAMESPACE}.svc{suffix}"
        for name in (SERVICE_NAME, OPERATOR_SERVICE_NAME)
        for suffix in ("", ".cluster.local")
    )
    pki._signed(
        "keda",
        "ca",
        f"/CN={SERVICE_ACCOUNT}",
        certs.dir,
        server_sans=f"{sans},DNS:localhost,IP:127.0.0.1",
        client_too=True,
    )
    cert_dir = certs.dir / "keda"
    cert_dir.mkdir(exist_ok=True)
    shutil.copy(certs.path("ca.crt"), cert_dir / "ca.crt")
    shutil.copy(certs.path("keda.crt"), cert_dir / "tls.crt")
    shutil.copy(certs.path("keda.key"), cert_dir / "tls.key")
    return cert_dir


def _create(request: Request, collection: str, body: dict[str, object]) -> None:
    status, answer = request("POST", collection, body)
    if status not in (201, 409):
        raise RuntimeError(f"could not create {collection}: {status} {answer}")


def install(request: Request, kubectl: list[str], keda_dir: Path) -> None:
    """The ``keda`` namespace and ServiceAccount, then KEDA's CRDs (Established) and RBAC."""
    _create(
        request,
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    _create(
        request,
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE_ACCOUNT}},
    )
    crds = sorted(str(p) for p in (keda_dir / "crds").glob("*.yaml"))
    rbac = sorted(str(p) for p in (keda_dir / "rbac").glob("*.yaml"))
    files = [arg for path in (*crds, *rbac) for arg in ("-f", path)]
    crd_files = [arg for path in crds for arg in ("-f", path)]
    for args in (
        ["apply", "--server-side", "--force-conflicts", *files],
        ["wait", "--for=condition=Established", "--timeout=60s", *crd_files],
    ):
        result = subprocess.run([*kubectl, *args], capture_output=True, text=True, timeout=90, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {args[0]} of KEDA's manifests failed: {result.stderr[-2000:]}")


def write_kubeconfig(request: Request, path: Path, server: str, certs: pki.Pki) -> Path:
    """A kubeconfig for ``keda/keda-operator`` (a TokenRequest token), like its Pods would have."""
    status, answer = request(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": TOKEN_SECONDS},
        },
    )
    if status not in (200, 201):
        raise RuntimeError(f"could not get a token for {NAMESPACE}/{SERVICE_ACCOUNT}: {status} {answer}")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": server, "certificate-authority": str(certs.path("ca.crt"))},
            }
        ],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": answer["status"]["token"]}}],
        "contexts": [
            {"name": "keda", "context": {"cluster": "local", "user": SERVICE_ACCOUNT, "namespace": NAMESPACE}}
        ],
        "current-context": "keda",
    }
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def environment(kubeconfig: Path) -> Mapping[str, str]:
    """What KEDA's Deployments set: every namespace watched, ``keda`` as its own namespace."""
    return {
        "WATCH_NAMESPACE": "",
        "POD_NAMESPACE": NAMESPACE,
        "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
        "KUBECONFIG": str(kubeconfig),
    }


def operator_argv(binary: Path, kubeconfig: Path, cert_dir: Path, ports: Mapping[str, int]) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        f"--metrics-bind-address=127.0.0.1:{ports['operator-metrics']}",
        f"--health-probe-bind-address=127.0.0.1:{ports['operator-probe']}",
        f"--metrics-service-bind-address=127.0.0.1:{ports['grpc']}",
        f"--cert-dir={cert_dir}",
        f"--ca-dir={cert_dir}",
        "--enable-cert-rotation=false",
        "--enable-webhook-patching=false",
        "--enable-apiservice-patching=false",
        "--zap-log-level=info",
        "--zap-encoder=console",
    ]


def adapter_argv(binary: Path, kubeconfig: Path, cert_dir: Path, ports: Mapping[str, int]) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--lister-kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['adapter']}",
        f"--tls-cert-file={cert_dir / 'tls.crt'}",
        f"--tls-private-key-file={cert_dir / 'tls.key'}",
        f"--cert-dir={cert_dir}",
        f"--metrics-service-address=127.0.0.1:{ports['grpc']}",
        f"--port={ports['adapter-metrics']}",
        "--zap-log-level=info",
        "--zap-encoder=console",
    ]


def register(request: Request, port: int, certs: pki.Pki) -> None:
    register_apiservice(
        request,
        group=GROUP,
        version="v1beta1",
        service=SERVICE_NAME,
        namespace=NAMESPACE,
        port=port,
        certs=certs,
    )


def available(request: Request) -> bool:
    return apiservice_available(request, APISERVICE_NAME)
