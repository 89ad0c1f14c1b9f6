"""Static checks of ``crds/greeter.yaml``: the parts that need no apiserver to verify.

The apiserver-side behaviour (every rejection and its message) is tested for real in
``tests/integration/test_greeter_validation.py``; this keeps the CRD and the code in step.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kopfscale.greeter import manifests as m

CRD = yaml.safe_load((Path(__file__).parents[2] / "crds" / "greeter.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")


def test_names() -> None:
    assert CRD["metadata"]["name"] == "greeters.kopfscale.dev"
    names = CRD["spec"]["names"]
    assert (names["kind"], names["plural"], names["categories"]) == ("Greeter", "greeters", ["kopfscale"])
    builtin_short_names = {
        "cm",
        "csr",
        "cs",
        "ds",
        "deploy",
        "ep",
        "ev",
        "hpa",
        "ing",
        "limits",
        "ns",
        "no",
        "pvc",
        "pv",
        "po",
        "pdb",
        "pc",
        "quota",
        "rs",
        "rc",
        "sa",
        "svc",
        "sts",
        "sc",
        "crd",
        "netpol",
        "ingclass",
        "vac",
    }
    assert not set(names["shortNames"]) & builtin_short_names


def test_every_spec_field_is_described_for_kubectl_explain() -> None:
    undocumented = [path for path, sub in walk(SPEC, "spec") if not sub.get("description")]
    assert undocumented == []


def test_defaults_agree_with_the_controller() -> None:
    props = SPEC["properties"]
    assert props["replicas"]["default"] == m.DEFAULT_REPLICAS
    assert props["port"]["default"] == m.DEFAULT_PORT
    assert props["serviceType"]["default"] == m.DEFAULT_SERVICE_TYPE
    assert SPEC["required"] == ["message"]


def test_scale_subresource_and_status_fields() -> None:
    scale = VERSION["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    status_fields = set(SCHEMA["properties"]["status"]["properties"])
    assert status_fields == {
        "observedGeneration",
        "replicas",
        "readyReplicas",
        "selector",
        "url",
        "conditions",
    }


def test_printer_columns() -> None:
    paths = [c["jsonPath"] for c in VERSION["additionalPrinterColumns"]]
    for expected in (
        ".spec.message",
        ".spec.replicas",
        ".status.readyReplicas",
        '.status.conditions[?(@.type=="Ready")].status',
        ".metadata.creationTimestamp",
    ):
        assert expected in paths


def test_no_unknown_fields_are_preserved() -> None:
    assert not [p for p, sub in walk(SCHEMA, "") if sub.get("x-kubernetes-preserve-unknown-fields")]


def cel_regex(rule: str) -> str:
    """The regex inside ``self.matches('...')``, CEL string escapes undone."""
    found = re.search(r"\.matches\('(.*)'\)", rule)
    assert found
    return found.group(1).replace("\\\\", "\\")


IMAGE_RE = cel_regex(SPEC["properties"]["image"]["x-kubernetes-validations"][0]["rule"])
NAME_RE = cel_regex(SCHEMA["x-kubernetes-validations"][1]["rule"])


@pytest.mark.parametrize(
    "image",
    [
        "nginx",
        "nginx:1.27",
        "library/nginx:latest",
        "ghcr.io/kopfscale/kopfscale:0.1.0",
        "localhost:5000/greeter",
        "registry.example.com:443/a/b/c:v1-rc.2",
        "example.com/greeter@sha256:" + "0" * 64,
        "example.com/greeter:1@sha256:" + "a" * 64,
        "my_org/my-app__x",
        "Registry.Example.COM/app:TAG_1",
    ],
)
def test_image_rule_accepts_references(image: str) -> None:
    assert re.fullmatch(IMAGE_RE, image)


@pytest.mark.parametrize(
    "image",
    [
        "",
        "nginx latest",
        "https://ghcr.io/x/y",
        "Nginx",
        "ghcr.io/Org/app",
        "app:",
        "app:-bad",
        "app@sha256:short",
        "/app",
        "app/",
        "a..b",
        "app:" + "t" * 129,
    ],
)
def test_image_rule_rejects_garbage(image: str) -> None:
    assert not re.fullmatch(IMAGE_RE, image)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("hello", True),
        ("a", True),
        ("a-1", True),
        ("x" * 63, True),
        ("x" * 64, False),
        ("1hello", False),
        ("hello.world", False),
        ("hello-", False),
        ("Hello", False),
    ],
)
def test_name_rule(name: str, ok: bool) -> None:
    assert SCHEMA["x-kubernetes-validations"][0]["rule"] == "self.metadata.name.size() <= 63"
    assert (bool(re.fullmatch(NAME_RE, name)) and len(name) <= 63) is ok
