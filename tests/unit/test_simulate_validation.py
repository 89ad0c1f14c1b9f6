"""The simulator refuses what the API server refuses, with the API server's words.

The cases are the integration suite's own (tests/integration/test_scaledapp_validation.py),
checked there against a real kube-apiserver: the same object must fail here with the same text.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kopfscale.simulate import cel, manifest
from kopfscale.simulate.errors import InputError
from tests.integration.test_scaledapp_validation import EXAMPLE, EXAMPLE_YAML, INVALID


def test_the_issue_document_is_accepted_and_defaulted() -> None:
    loaded = manifest.load("web.yaml", EXAMPLE_YAML)
    assert loaded.name == "web"
    assert loaded.spec.max_replicas == 10
    assert loaded.body["spec"]["initialCooldownPeriod"] == 0  # a schema default, as the API server fills in
    assert manifest.from_body("web.json", EXAMPLE).spec == loaded.spec


def test_cel_is_evaluated() -> None:
    assert cel.available()  # a dev dependency; without it CEL-only cases below would pass by luck


@pytest.mark.parametrize(("what", "obj", "message"), INVALID, ids=[case[0] for case in INVALID])
def test_invalid_scaledapps_are_rejected_like_the_api_server_does(
    what: str, obj: dict[str, Any], message: str
) -> None:
    with pytest.raises(InputError) as caught:
        manifest.from_body("web.yaml", obj)
    assert message in str(caught.value), f"{what}: {caught.value}"


def test_messages_name_the_file_line_and_field() -> None:
    text = EXAMPLE_YAML.replace("pollingInterval: 15", "pollingInterval: 0").replace(
        "cooldownPeriod: 300", "cooldownPeriod: 300\n  speed: fast"
    )
    with pytest.raises(InputError) as caught:
        manifest.load("web.yaml", text)
    assert str(caught.value).splitlines() == [
        'web.yaml: the ScaledApp "web" is invalid:',
        '  web.yaml:15: unknown field "spec.speed"',
    ]
    with pytest.raises(InputError) as caught:
        manifest.load("web.yaml", EXAMPLE_YAML.replace("pollingInterval: 15", "pollingInterval: 0"))
    assert str(caught.value).splitlines()[1] == (
        "  web.yaml:13: spec.pollingInterval: Invalid value: 0: "
        "spec.pollingInterval in body should be greater than or equal to 1"
    )


def test_a_cel_message_names_the_object() -> None:
    obj = copy.deepcopy(EXAMPLE)
    obj["spec"]["minReplicas"] = 11
    with pytest.raises(InputError) as caught:
        manifest.from_body("web.yaml", obj)
    assert (
        "spec.minReplicas: Invalid value: spec.minReplicas must be less than or equal to spec.maxReplicas"
        in str(caught.value)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb: c: d\n", "web.yaml:2: not valid YAML: mapping values are not allowed here"),
        ("---\na: 1\n---\nb: 2\n", "expected exactly one ScaledApp document, found 2"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
            "expected apiVersion kopfscale.dev/v1 and kind ScaledApp",
        ),
        ("apiVersion: kopfscale.dev/v1\nkind: ScaledApp\nspec: {}\n", "metadata.name: Required value"),
    ],
)
def test_not_a_scaledapp(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        manifest.load("web.yaml", text)
    assert message in str(caught.value)


def test_a_source_config_the_operator_would_reject() -> None:
    obj = copy.deepcopy(EXAMPLE)
    obj["spec"]["metrics"][2]["cron"]["timezone"] = "Mars/Olympus"  # passes the CRD's pattern
    with pytest.raises(InputError) as caught:
        manifest.from_body("web.yaml", obj)
    assert (
        "spec.metrics[2].cron: cron [0 8 * * 1-5, 0 18 * * 1-5) Mars/Olympus: unknown timezone 'Mars/Olympus'"
        in str(caught.value)
    )
