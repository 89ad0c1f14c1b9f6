"""The CRD's ``x-kubernetes-validations`` rules, evaluated by cel-python (a CEL implementation).

The API server compiles each rule once and evaluates it with ``self`` bound to the value at the
rule's place; a rule that is false reports ``<path>: Invalid value: "<type>": <message>``. We do
the same with the ``celpy`` package (``pip install kopfscale[simulate]``). Without it the rules are
skipped and :func:`available` says so; the operator's own spec parser still catches the most
important ones (min > max, template vs scaleTargetRef).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from kopfscale.simulate.schema import FieldError, Schema, type_name, walk_validations


def available() -> bool:
    try:
        import celpy  # noqa: F401
    except ImportError:
        return False
    return True


@cache
def _program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def check(obj: Any, schema: Schema, path: tuple[str | int, ...] = ()) -> list[FieldError]:
    """The failed rules of ``obj`` (defaulted), in the API server's message style."""
    from celpy import adapter

    errors: list[FieldError] = []
    for where, value, rule in walk_validations(obj, schema, path):
        text = str(rule.get("rule", ""))
        try:
            result = _program(text).evaluate({"self": adapter.json_to_cel(_plain(value))})
        except Exception as e:  # a rule that cannot run on this value is reported, never hidden
            errors.append(FieldError(where, f"Invalid value: {_kind(value)}: rule {text!r} failed: {e}"))
            continue
        if isinstance(result, Exception) or not bool(result):
            message = str(rule.get("message") or f"failed rule: {text}")
            field_path = rule.get("fieldPath")
            if isinstance(field_path, str) and field_path:
                # The API server reports a rule with a fieldPath at that field, without the type.
                at = (*where, *(part for part in field_path.lstrip(".").split(".") if part))
                errors.append(FieldError(at, f"Invalid value: {message}"))
            else:
                errors.append(FieldError(where, f"Invalid value: {_kind(value)}: {message}"))
    return errors


def _kind(value: Any) -> str:
    return f'"{type_name(value)}"'


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
