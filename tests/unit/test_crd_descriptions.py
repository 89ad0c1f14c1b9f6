"""Both CRDs describe themselves: ``kubectl explain`` prints a description for every field.

``kubectl explain scaledapp.spec.metrics.target`` shows the schema's ``description``; a field
without one prints ``<empty>``. This walks every schema node (properties, array items, map
values) and fails on any that has none. CEL rules must say *where* the error is (``fieldPath``
or a rule on the field itself) and *what* is wrong (``message``), so no rejection reads
``<nil>: Invalid value``; the live messages are checked in
``tests/integration/test_crd_messages.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CRDS = Path(__file__).parents[2] / "crds"
FILES = sorted(CRDS.glob("*.yaml"))


def schema_of(path: Path) -> dict[str, Any]:
    crd = yaml.safe_load(path.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every node a user can reach with ``kubectl explain``, with its dotted path."""
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        yield from walk(extra, f"{path}{{}}")


def undescribed(path: Path) -> list[str]:
    missing = []
    for where, node in walk(schema_of(path), path.stem):
        # Array items are explained by the array's own description (kubectl shows the array's);
        # the root metadata is ObjectMeta, which kubectl explains itself (the apiserver forbids
        # a description there: only name and generateName may be restricted).
        if where.endswith("[]") or where == f"{path.stem}.metadata":
            continue
        if not str(node.get("description", "")).strip():
            missing.append(where)
    return missing


def test_there_are_two_crds() -> None:
    assert [f.name for f in FILES] == ["greeter.yaml", "scaledapp.yaml"]


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_every_field_has_a_description(path: Path) -> None:
    assert undescribed(path) == []


def test_the_walk_finds_an_undescribed_field() -> None:
    schema = {"type": "object", "description": "x", "properties": {"a": {"type": "string"}}}
    assert [w for w, n in walk(schema, "root") if not n.get("description")] == ["root.a"]


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_every_cel_rule_has_a_message_and_a_place(path: Path) -> None:
    """Rules on objects (not on the field they check) name the field with ``fieldPath``."""
    problems = []
    for where, node in walk(schema_of(path), path.stem):
        for rule in node.get("x-kubernetes-validations") or []:
            if not (rule.get("message") or rule.get("messageExpression")):
                problems.append(f"{where}: {rule['rule']!r} has no message")
            if node.get("type") == "object" and node.get("properties") and not rule.get("fieldPath"):
                problems.append(f"{where}: {rule['rule']!r} has no fieldPath")
    assert problems == []
