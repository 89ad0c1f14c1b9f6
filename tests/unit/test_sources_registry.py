"""The source registry and the CRD describe the same metric types (one place each, held together).

A new source that is registered but missing from ``crds/scaledapp.yaml`` would have its block
pruned by the API server (silently: the ScaledApp would read nothing); one in the CRD but not
registered would be admitted and then fail every round. Both fail here instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kopfscale.scaledapp.sources import REGISTRY, Meaning

CRD = Path(__file__).resolve().parents[2] / "crds" / "scaledapp.yaml"
#: Fields of a ``metrics[]`` item that are not a source block.
COMMON_FIELDS = {"name", "type", "target", "activationThreshold"}


def metric_item_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    item: dict[str, Any] = spec["properties"]["metrics"]["items"]
    return item


def test_the_type_enum_is_the_registry() -> None:
    assert set(metric_item_schema()["properties"]["type"]["enum"]) == set(REGISTRY)


def test_every_registered_type_has_its_block_and_no_other_block_exists() -> None:
    blocks = set(metric_item_schema()["properties"]) - COMMON_FIELDS
    assert blocks == set(REGISTRY)
    for name in REGISTRY:
        assert metric_item_schema()["properties"][name]["type"] == "object"


def test_the_block_is_required_exactly_for_its_type() -> None:
    rules = {r["rule"] for r in metric_item_schema()["x-kubernetes-validations"]}
    for name in REGISTRY:
        assert f"(self.type == '{name}') == has(self.{name})" in rules


def test_floor_sources_take_no_target_and_the_others_need_one() -> None:
    rules = {r["rule"] for r in metric_item_schema()["x-kubernetes-validations"]}
    floors = sorted(name for name, scaler in REGISTRY.items() if scaler.meaning is Meaning.FLOOR)
    assert floors == ["cron"]
    assert "self.type == 'cron' || has(self.target)" in rules
    assert "self.type != 'cron' || !has(self.target)" in rules


def test_registry_keys_are_the_scalers_own_types() -> None:
    for name, scaler in REGISTRY.items():
        assert scaler.type == name
        assert isinstance(scaler.meaning, Meaning)


def test_an_unusable_source_block_is_an_invalid_spec_once_not_an_error_every_round() -> None:
    import pytest

    from kopfscale.scaledapp.spec import SpecError, parse

    raw = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "maxReplicas": 5,
        "metrics": [
            {
                "name": "queue",
                "type": "http",
                "http": {"url": "http://127.0.0.1:1/", "valueLocation": "$.[unclosed"},
                "target": {"type": "AverageValue", "value": 5},
            }
        ],
    }
    with pytest.raises(SpecError, match=r"metric 'queue': http http://127.0.0.1:1/: invalid valueLocation"):
        parse(raw)
    raw["metrics"][0]["http"]["valueLocation"] = "$.depth"  # type: ignore[index]
    (metric,) = parse(raw).metrics
    assert metric.source.type == "http" and metric.meaning is Meaning.TOTAL
