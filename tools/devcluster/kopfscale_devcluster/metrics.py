"""``metrics.k8s.io`` on the local control plane: a real metrics-server scraping kwok.

How the pieces meet, all on loopback:

* kwok plays every node's kubelet on one TLS port. A kwok ``Metric`` (its own
  ``kustomize/metrics/resource`` one, served per node under ``/metrics/nodes/<node>/metrics/resource``)
  emulates the kubelet's ``/metrics/resource`` endpoint, and a ``ClusterResourceUsage`` gives each
  container the CPU and memory usage written in its pod's annotations (:data:`USAGE_CPU_ANNOTATION`,
  :data:`USAGE_MEMORY_ANNOTATION`). Both are handed to kwok in a ``--config`` file, so no kwok CRDs
  are needed and changing an annotation changes the simulated usage at the next scrape.
* Each node carries metrics-server's ``metrics.k8s.io/resource-metrics-path`` annotation pointing at
  its kwok path; metrics-server finds kwok at the node's InternalIP (127.0.0.1) and the port in
  ``status.daemonEndpoints`` (``--kubelet-use-node-status-port``) and checks kwok's certificate
  against the cluster CA.
* metrics-server (built from ``sigs.k8s.io/metrics-server``) serves on 127.0.0.1 with a certificate
  signed by the cluster CA for ``metrics-server.kube-system.svc``, the name the aggregator verifies.
  The ``v1beta1.metrics.k8s.io`` APIService points at an ExternalName Service ``localhost`` in
  kube-system (Endpoints may not hold loopback addresses; the apiserver runs without
  ``--enable-aggregator-routing`` so the aggregator resolves the ExternalName itself).

The annotation applies to every container of the pod (two containers at ``70m`` use 140m). A pod
without the annotations uses 1m CPU and 1Mi memory per container. A usage of zero makes
metrics-server drop the pod (it treats a zero counter or working set as incomplete).

Timing: metrics-server's shortest ``--metric-resolution`` is 10 s and CPU is a rate between two
scrapes, so a new pod has PodMetrics 10-20 s after it runs (the first pod a kwok process serves
takes one scrape more: kwok fills its pod cache lazily). A changed annotation shows at the next
scrape, within ~10 s: kwok charges the whole interval since the previous scrape at the current
usage. ``LocalCluster.start()`` waits only until the APIService is Available (about 1 s more).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kopfscale_devcluster import pki

USAGE_CPU_ANNOTATION = "kwok.x-k8s.io/usage-cpu"
USAGE_MEMORY_ANNOTATION = "kwok.x-k8s.io/usage-memory"
RESOURCE_METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
METRIC_RESOLUTION = "10s"  # metrics-server refuses anything shorter
SERVICE_NAME = "metrics-server"
SERVICE_NAMESPACE = "kube-system"
APISERVICE_NAME = "v1beta1.metrics.k8s.io"

Request = Callable[..., tuple[int, Any]]


def resource_metrics_path(node_name: str) -> str:
    """Where kwok serves this node's emulated kubelet ``/metrics/resource``."""
    return f"/metrics/nodes/{node_name}/metrics/resource"


def node_annotations(node_name: str) -> dict[str, str]:
    """Annotations a kwok node needs so metrics-server scrapes the right kwok path."""
    return {RESOURCE_METRICS_PATH_ANNOTATION: resource_metrics_path(node_name)}


def _labelled(value: str, *labels: tuple[str, str]) -> dict[str, Any]:
    return {"value": value, "labels": [{"name": n, "value": v} for n, v in labels]}


def _kwok_objects() -> list[dict[str, Any]]:
    """kwok's ``kustomize/metrics/resource`` Metric and ``kustomize/metrics/usage`` ClusterResourceUsage
    (as in kwok v0.7.0, ``help`` texts left out, pod CPU counter moved first)."""
    container = (
        ("container", "container.name"),
        ("namespace", "pod.metadata.namespace"),
        ("pod", "pod.metadata.name"),
    )
    pod = container[1:]
    metrics = [
        {"name": "scrape_error", "dimension": "node", "kind": "gauge", "value": "0"},
        {
            "name": "container_start_time_seconds",
            "dimension": "container",
            "kind": "gauge",
            **_labelled("pod.SinceSecond()", *container),
        },
        # Before the container counter, unlike kwok's file: kwok starts a counter at 0 on its first
        # evaluation and metrics-server drops a container whose CPU counter is 0, which would cost
        # a new pod one more scrape (10 s). The pod counter sums the same per-container counters,
        # so evaluating it first starts them, and the container counter is already above 0.
        {
            "name": "pod_cpu_usage_seconds_total",
            "dimension": "pod",
            "kind": "counter",
            **_labelled('pod.CumulativeUsage("cpu")', *pod),
        },
        {
            "name": "container_cpu_usage_seconds_total",
            "dimension": "container",
            "kind": "counter",
            **_labelled('pod.CumulativeUsage("cpu", container.name)', *container),
        },
        {
            "name": "container_memory_working_set_bytes",
            "dimension": "container",
            "kind": "gauge",
            **_labelled('pod.Usage("memory", container.name)', *container),
        },
        {
            "name": "pod_memory_working_set_bytes",
            "dimension": "pod",
            "kind": "gauge",
            **_labelled('pod.Usage("memory")', *pod),
        },
        {
            "name": "node_cpu_usage_seconds_total",
            "dimension": "node",
            "kind": "counter",
            "value": 'node.CumulativeUsage("cpu")',
        },
        {
            "name": "node_memory_working_set_bytes",
            "dimension": "node",
            "kind": "gauge",
            "value": 'node.Usage("memory")',
        },
    ]

    def from_annotation(annotation: str, default: str) -> dict[str, str]:
        return {
            "expression": f'"{annotation}" in pod.metadata.annotations'
            f' ? Quantity(pod.metadata.annotations["{annotation}"]) : Quantity("{default}")'
        }

    return [
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Metric",
            "metadata": {"name": "metrics-resource"},
            "spec": {"path": resource_metrics_path("{nodeName}"), "metrics": metrics},
        },
        {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterResourceUsage",
            "metadata": {"name": "usage-from-annotation"},
            "spec": {
                "usages": [
                    {
                        "usage": {
                            "cpu": from_annotation(USAGE_CPU_ANNOTATION, "1m"),
                            "memory": from_annotation(USAGE_MEMORY_ANNOTATION, "1Mi"),
                        }
                    }
                ]
            },
        },
    ]


def write_kwok_config(state_dir: Path) -> Path:
    """kwok's ``--config`` file with the Metric and ClusterResourceUsage (JSON documents are YAML)."""
    path = state_dir / "kwok-metrics.yaml"
    path.write_text("---\n".join(json.dumps(obj, indent=1) + "\n" for obj in _kwok_objects()))
    return path


def server_argv(binary: Path, certs: pki.Pki, kubeconfig: Path, port: int) -> list[str]:
    """metrics-server's command line (serving certificate issued here, signed by the cluster CA)."""
    pki._signed(
        "metrics-server",
        "ca",
        "/CN=metrics-server",
        certs.dir,
        server_sans=f"DNS:{SERVICE_NAME}.{SERVICE_NAMESPACE}.svc,DNS:localhost,IP:127.0.0.1",
    )
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={certs.path('metrics-server.crt')}",
        f"--tls-private-key-file={certs.path('metrics-server.key')}",
        f"--metric-resolution={METRIC_RESOLUTION}",
        "--kubelet-request-timeout=5s",
        "--kubelet-preferred-address-types=InternalIP",
        "--kubelet-use-node-status-port",
        f"--kubelet-certificate-authority={certs.path('ca.crt')}",
        "--v=0",
    ]


def _apply(request: Request, collection: str, name: str, body: dict[str, Any]) -> None:
    status, answer = request("POST", collection, body)
    if status == 409:  # a state directory reused with its etcd data: replace what is there
        status, current = request("GET", f"{collection}/{name}")
        if status == 200:
            version = current["metadata"]["resourceVersion"]
            body = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
            status, answer = request("PUT", f"{collection}/{name}", body)
    if status not in (200, 201):
        raise RuntimeError(f"could not apply {collection}/{name}: {status} {answer}")


def register_apiservice(
    request: Request, *, group: str, version: str, service: str, namespace: str, port: int, certs: pki.Pki
) -> None:
    """An ExternalName Service ``localhost`` and the APIService routing ``group/version`` to a local
    server on ``port`` (its certificate signed by the cluster CA for ``<service>.<namespace>.svc``)."""
    _apply(
        request,
        f"/api/v1/namespaces/{namespace}/services",
        service,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": namespace},
            "spec": {"type": "ExternalName", "externalName": "localhost"},
        },
    )
    name = f"{version}.{group}"
    _apply(
        request,
        "/apis/apiregistration.k8s.io/v1/apiservices",
        name,
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": name},
            "spec": {
                "group": group,
                "version": version,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "service": {"name": service, "namespace": namespace, "port": port},
                "caBundle": base64.b64encode(certs.path("ca.crt").read_bytes()).decode(),
            },
        },
    )


def apiservice_available(request: Request, name: str) -> bool:
    """Whether the aggregator reaches the APIService's server (condition Available=True)."""
    status, body = request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
    if status != 200:
        return False
    conditions = body.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


def register(request: Request, port: int, certs: pki.Pki) -> None:
    """The ExternalName Service and the APIService that route ``metrics.k8s.io`` to ``port``."""
    register_apiservice(
        request,
        group="metrics.k8s.io",
        version="v1beta1",
        service=SERVICE_NAME,
        namespace=SERVICE_NAMESPACE,
        port=port,
        certs=certs,
    )


def available(request: Request) -> bool:
    """Whether the aggregator reaches metrics-server (APIService condition Available=True)."""
    return apiservice_available(request, APISERVICE_NAME)
