"""Metric credentials from Secrets, end to end: the CRD's shape at admission, and the operator
reading the named Secret of the ScaledApp's namespace into a header, basic auth or a token.

The in-process operator runs with the test's admin credentials, so it may read Secrets; what
a chart install grants (rbac.readSecrets) is checked in tests/unit/test_chart_tenant.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from ..conftest import Cluster, OperatorFactory
from ..helpers import JsonServer, wait_for
from .test_scaledapp import apply, events, get, replicas, scaledapp

pytestmark = pytest.mark.integration


class AuthServer(JsonServer):
    """Answers {"load": 30} only to the expected credentials, 401 otherwise; records what came."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        super().__init__(self.answer)

    def answer(self, headers: dict[str, str]) -> tuple[int, bytes]:
        self.seen.append(headers)
        ok = headers.get("X-Api-Key") == "k3y-from-secret" or headers.get("Authorization") in (
            "Basic " + base64.b64encode(b"scaler:pa55-from-secret").decode(),
            "Bearer t0ken-from-secret",
        )
        return (200, b'{"load": 30}') if ok else (401, b'{"error": "who are you"}')


@pytest.fixture()
def auth_server() -> Iterator[AuthServer]:
    server = AuthServer()
    yield server
    server.close()


def ref(name: str, key: str) -> dict[str, Any]:
    return {"valueFrom": {"secretKeyRef": {"name": name, "key": key}}}


def with_http(name: str, url: str, **fields: Any) -> dict[str, Any]:
    obj = scaledapp(name, url)
    obj["spec"]["metrics"][0]["http"].update(fields)
    return obj


def dry_run(cluster: Cluster, namespace: str, obj: dict[str, Any]) -> str:
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False
    )
    return result.stderr if result.returncode else ""


def test_the_schema_of_credentials(cluster: Cluster, namespace: str) -> None:
    url = "http://127.0.0.1:9/stats"
    assert (
        dry_run(
            cluster, namespace, with_http("ok", url, headersFrom=[{"name": "X-Api-Key", **ref("s", "k")}])
        )
        == ""
    )
    assert (
        dry_run(
            cluster,
            namespace,
            with_http("ok", url, basicAuth={"username": {"value": "u"}, "password": ref("s", "p")}),
        )
        == ""
    )
    assert (
        dry_run(
            cluster, namespace, with_http("ok", url, tls={"ca": {"value": "-----BEGIN CERTIFICATE-----"}})
        )
        == ""
    )
    both = with_http(
        "x", url, basicAuth={"username": {"value": "u", **ref("s", "u")}, "password": ref("s", "p")}
    )
    assert "set exactly one of value and valueFrom" in dry_run(cluster, namespace, both)
    clear_token = with_http("x", url, bearerToken={"value": "t0ken"})
    assert 'unknown field "spec.metrics[0].http.bearerToken.value"' in dry_run(
        cluster, namespace, clear_token
    )
    no_key = with_http(
        "x", url, headersFrom=[{"name": "X-Api-Key", "valueFrom": {"secretKeyRef": {"name": "s"}}}]
    )
    assert "secretKeyRef.key: Required value" in dry_run(cluster, namespace, no_key)
    bad_header = with_http("x", url, headersFrom=[{"name": "X Api Key", **ref("s", "k")}])
    assert "headersFrom[0].name" in dry_run(cluster, namespace, bad_header)


def test_credentials_come_from_the_scaledapps_own_secrets(
    cluster: Cluster, namespace: str, operator_factory: OperatorFactory, auth_server: AuthServer
) -> None:
    with operator_factory() as operator:
        check_credentials(cluster, namespace, auth_server)
    for value in ("k3y-from-secret", "pa55-from-secret", "t0ken-from-secret"):
        assert value not in operator.output  # the log, at the fixture's verbose level even


def check_credentials(cluster: Cluster, namespace: str, auth_server: AuthServer) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "metrics-creds"},
        "stringData": {
            "api-key": "k3y-from-secret",
            "password": "pa55-from-secret",
            "token": "t0ken-from-secret\n",
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(secret))
    cases = {
        "header": {"headersFrom": [{"name": "X-Api-Key", **ref("metrics-creds", "api-key")}]},
        "basic": {
            "basicAuth": {"username": {"value": "scaler"}, "password": ref("metrics-creds", "password")}
        },
        "bearer": {"bearerToken": ref("metrics-creds", "token")},
    }
    for name, block in cases.items():
        apply(cluster, namespace, with_http(name, auth_server.url, **block))
    for name in cases:  # 30 / 10 per replica = 3
        wait_for(lambda name=name: replicas(cluster, namespace, name) == 3, timeout=30, what=f"{name} at 3")  # type: ignore[misc]
    missing = with_http("missing", auth_server.url, bearerToken=ref("no-such-secret", "token"))
    wrong_key = with_http("wrong-key", auth_server.url, bearerToken=ref("metrics-creds", "nope"))
    for obj in (missing, wrong_key):
        apply(cluster, namespace, obj)

    def error(name: str) -> str:
        metrics = get(cluster, namespace, "scaledapp", name).get("status", {}).get("metrics", [])
        return str(metrics[0].get("error", "")) if metrics else ""

    wait_for(lambda: error("missing") and error("wrong-key"), timeout=30, what="both errors in status")
    assert error("missing").endswith(f"Secret no-such-secret does not exist in namespace {namespace}")
    assert error("wrong-key").endswith("Secret metrics-creds has no key 'nope'")
    everything = json.dumps(
        [get(cluster, namespace, "scaledapp", n) for n in (*cases, "missing", "wrong-key")]
    )
    everything += cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    for value in ("k3y-from-secret", "pa55-from-secret", "t0ken-from-secret"):
        assert value not in everything
    assert any(h.get("X-Api-Key") == "k3y-from-secret" for h in auth_server.seen)
    assert not [m for m in events(cluster, namespace, "MetricFailed") if "from-secret" in m]


def can_i(cluster: Cluster, user: str, *args: str) -> bool:
    result = cluster.kubectl("auth", "can-i", *args, f"--as={user}", check=False)
    return result.stdout.strip() == "yes"


def test_the_chart_grants_secret_reads_only_when_asked_and_only_where_it_watches(
    cluster: Cluster, namespace: str
) -> None:
    from .test_rbac_operator import chart_rbac

    other = f"{namespace[:50]}-other"
    cluster.kubectl("create", "namespace", other)
    try:
        with chart_rbac(cluster, namespace, "--set", f"watchNamespaces={{{namespace}}}") as sa:
            user = f"system:serviceaccount:{namespace}:{sa}"
            assert can_i(cluster, user, "patch", "scaledapps.kopfscale.dev", "-n", namespace)  # installed
            assert not can_i(cluster, user, "get", "secrets", "-n", namespace)
        with chart_rbac(
            cluster, namespace, "--set", f"watchNamespaces={{{namespace}}}", "--set", "rbac.readSecrets=true"
        ) as sa:
            user = f"system:serviceaccount:{namespace}:{sa}"
            assert can_i(cluster, user, "get", "secrets", "-n", namespace)
            assert not can_i(cluster, user, "list", "secrets", "-n", namespace)
            assert not can_i(cluster, user, "get", "secrets", "-n", other)  # namespaced stays namespaced
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
