"""The CRD's ``openAPIV3Schema`` applied to a manifest the way the API server applies it.

Order and wording follow the API server (k8s.io/apiextensions-apiserver, apimachinery field
errors), so a message here reads like the one ``kubectl apply`` prints:

1. strict decoding: a field the schema does not declare is ``unknown field "spec.foo"`` (kubectl's
   default ``--validate=strict``), unless ``x-kubernetes-preserve-unknown-fields`` allows it;
2. defaulting: every ``default`` of the schema is filled in before anything is validated;
3. the OpenAPI checks: ``spec.maxReplicas: Required value``, ``Unsupported value: "kafka"``,
   ``should be greater than or equal to 1``, list-map keys (``Duplicate value``), ...;
4. the ``x-kubernetes-validations`` CEL rules, by :mod:`kopfscale.simulate.cel`, only where the
   OpenAPI checks passed (as the API server skips CEL on an object whose schema errors it reports).

Pure: schema and object in, a list of :class:`FieldError` out (the defaulted object is a copy).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Schema = Mapping[str, Any]


@dataclass(frozen=True)
class FieldError:
    path: tuple[str | int, ...]  # ("spec", "metrics", 1, "type")
    message: str  # everything after "<path>: "
    at: tuple[str | int, ...] | None = None  # where in the file, when not ``path`` (unknown fields)

    @property
    def field(self) -> str:
        return render_path(self.path)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.path else self.message


def render_path(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _go(value: Any) -> str:
    """A value as the API server quotes it in ``Invalid value: ...``."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, Mapping):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return '"null"'


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def type_name(value: Any) -> str:
    for name in ("boolean", "integer", "number", "string", "object", "array"):
        if _TYPE_CHECKS[name](value):
            return name
    return "null"


def apply_defaults(obj: Any, schema: Schema) -> Any:
    """A copy of ``obj`` with the schema's defaults filled in (objects that are present only)."""
    obj = copy.deepcopy(obj)
    _default(obj, schema)
    return obj


def _default(obj: Any, schema: Schema) -> None:
    if isinstance(obj, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
        for key, value in obj.items():
            if key in props:
                _default(value, props[key])
            elif isinstance(schema.get("additionalProperties"), Mapping):
                _default(value, schema["additionalProperties"])
    elif isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
        for item in obj:
            _default(item, schema["items"])


def unknown_fields(obj: Any, schema: Schema, path: tuple[str | int, ...] = ()) -> list[FieldError]:
    """Strict decoding: fields the schema does not declare (kubectl apply rejects them)."""
    errors: list[FieldError] = []
    if isinstance(obj, Mapping) and schema.get("type", "object") == "object":
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        for key, value in obj.items():
            if props is not None and key in props:
                errors += unknown_fields(value, props[key], (*path, key))
            elif isinstance(additional, Mapping):
                errors += unknown_fields(value, additional, (*path, key))
            elif props is not None and not preserve and additional is not True:
                errors.append(FieldError((), f'unknown field "{render_path((*path, key))}"', at=(*path, key)))
    elif isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(obj):
            errors += unknown_fields(item, schema["items"], (*path, index))
    return errors


def validate(obj: Any, schema: Schema, path: tuple[str | int, ...] = ()) -> list[FieldError]:
    """The OpenAPI checks (no CEL) of one (already defaulted) value."""
    where = render_path(path) or "body"
    expected = schema.get("type")
    if obj is None:
        if schema.get("nullable"):
            return []
        return [
            FieldError(path, f'Invalid value: "null": {where} in body must be of type {expected}: "null"')
        ]
    if expected and not _TYPE_CHECKS[expected](obj):
        actual = type_name(obj)
        return [
            FieldError(
                path, f'Invalid value: {_go(obj)}: {where} in body must be of type {expected}: "{actual}"'
            )
        ]
    errors: list[FieldError] = []
    if "enum" in schema and obj not in schema["enum"]:
        allowed = ", ".join(_go(v) for v in schema["enum"])
        errors.append(FieldError(path, f"Unsupported value: {_go(obj)}: supported values: {allowed}"))
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        errors += _number(obj, schema, path, where)
    if isinstance(obj, str):
        errors += _string(obj, schema, path, where)
    if isinstance(obj, Mapping):
        errors += _object(obj, schema, path, where)
    if isinstance(obj, list):
        errors += _array(obj, schema, path, where)
    return errors


def _number(obj: float, schema: Schema, path: tuple[str | int, ...], where: str) -> list[FieldError]:
    errors = []
    if not math.isfinite(obj):
        return [FieldError(path, f"Invalid value: {_go(obj)}: {where} in body must be a finite number")]
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None:
        if schema.get("exclusiveMinimum") and obj <= low:
            errors.append(
                FieldError(
                    path, f"Invalid value: {_go(obj)}: {where} in body should be greater than {_go(low)}"
                )
            )
        elif obj < low:
            errors.append(
                FieldError(
                    path,
                    f"Invalid value: {_go(obj)}: {where} in body should be greater "
                    f"than or equal to {_go(low)}",
                )
            )
    if high is not None:
        if schema.get("exclusiveMaximum") and obj >= high:
            errors.append(
                FieldError(
                    path, f"Invalid value: {_go(obj)}: {where} in body should be less than {_go(high)}"
                )
            )
        elif obj > high:
            errors.append(
                FieldError(
                    path,
                    f"Invalid value: {_go(obj)}: {where} in body should be less than or equal to {_go(high)}",
                )
            )
    return errors


def _string(obj: str, schema: Schema, path: tuple[str | int, ...], where: str) -> list[FieldError]:
    errors = []
    if "minLength" in schema and len(obj) < schema["minLength"]:
        errors.append(
            FieldError(
                path,
                f"Invalid value: {_go(obj)}: {where} in body should be at least "
                f"{schema['minLength']} chars long",
            )
        )
    if "maxLength" in schema and len(obj) > schema["maxLength"]:
        errors.append(FieldError(path, f"Too long: may not be more than {schema['maxLength']} bytes"))
    if "pattern" in schema and not re.search(schema["pattern"], obj):
        errors.append(
            FieldError(path, f"Invalid value: {_go(obj)}: {where} in body should match '{schema['pattern']}'")
        )
    return errors


def _object(
    obj: Mapping[str, Any], schema: Schema, path: tuple[str | int, ...], where: str
) -> list[FieldError]:
    errors = [
        FieldError((*path, key), "Required value") for key in schema.get("required") or [] if key not in obj
    ]
    if "maxProperties" in schema and len(obj) > schema["maxProperties"]:
        errors.append(
            FieldError(path, f"Too many: {len(obj)}: must have at most {schema['maxProperties']} items")
        )
    props = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, value in obj.items():
        if key in props:
            errors += validate(value, props[key], (*path, key))
        elif isinstance(additional, Mapping):
            errors += validate(value, additional, (*path, key))
    return errors


def _array(obj: list[Any], schema: Schema, path: tuple[str | int, ...], where: str) -> list[FieldError]:
    errors = []
    if "minItems" in schema and len(obj) < schema["minItems"]:
        errors.append(
            FieldError(
                path,
                f"Invalid value: {len(obj)}: {where} in body should have at least {schema['minItems']} items",
            )
        )
    if "maxItems" in schema and len(obj) > schema["maxItems"]:
        errors.append(FieldError(path, f"Too many: {len(obj)}: must have at most {schema['maxItems']} items"))
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(obj):
            errors += validate(item, items, (*path, index))
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: set[str] = set()
        for index, item in enumerate(obj):
            if not isinstance(item, Mapping):
                continue
            key = json.dumps({k: item.get(k) for k in keys}, sort_keys=True)
            if key in seen:
                shown = ", ".join(f"{json.dumps(k)}:{_go(item.get(k))}" for k in keys)
                errors.append(
                    FieldError((*path, index), f"Duplicate value: map[string]interface {{}}{{{shown}}}")
                )
            seen.add(key)
    return errors


def rules(schema: Schema) -> list[Mapping[str, Any]]:
    return list(schema.get("x-kubernetes-validations") or [])


def walk_validations(
    obj: Any, schema: Schema, path: tuple[str | int, ...] = ()
) -> list[tuple[tuple[str | int, ...], Any, Mapping[str, Any]]]:
    """Every (path, value, rule) the CEL evaluator must check, children before parents."""
    found: list[tuple[tuple[str | int, ...], Any, Mapping[str, Any]]] = []
    if isinstance(obj, Mapping):
        props = schema.get("properties") or {}
        for key, value in obj.items():
            if key in props:
                found += walk_validations(value, props[key], (*path, key))
    elif isinstance(obj, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(obj):
            found += walk_validations(item, schema["items"], (*path, index))
    found += [(path, obj, rule) for rule in rules(schema)]
    return found
