"""A ScaledApp manifest, loaded and validated as ``kubectl apply`` would, then parsed by the operator.

:func:`load` reads one YAML (or JSON) document, checks it against ``crds/scaledapp.yaml`` (strict
fields, defaults, OpenAPI, CEL: :mod:`kopfscale.simulate.schema`, :mod:`kopfscale.simulate.cel`)
and then through the operator's own :func:`kopfscale.scaledapp.spec.parse`, so that what the
simulator runs is exactly what the operator would run. Every problem is an :class:`InputError`
whose lines read ``FILE:LINE: field: message``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kopfscale import GROUP, VERSION
from kopfscale.scaledapp.sources import SourceError, parse_source
from kopfscale.scaledapp.spec import ScaledAppSpec, SpecError, parse
from kopfscale.simulate import cel, schema
from kopfscale.simulate.errors import InputError

CRD_FILE = "scaledapp.yaml"


@dataclass(frozen=True)
class Manifest:
    path: str
    name: str
    body: Mapping[str, Any]  # defaulted, as the API server stores it
    spec: ScaledAppSpec


def crd_dirs() -> list[Path]:
    """Where ``crds/`` is: the source checkout (the repo root beside ``operator/``)."""
    here = Path(__file__).resolve()
    return [parent / "crds" for parent in here.parents]


@functools.cache
def crd_schema() -> Mapping[str, Any]:
    for directory in crd_dirs():
        path = directory / CRD_FILE
        if path.is_file():
            crd = yaml.safe_load(path.read_text())
            for version in crd["spec"]["versions"]:
                if version["name"] == VERSION:
                    result: Mapping[str, Any] = version["schema"]["openAPIV3Schema"]
                    return result
    raise InputError(f"cannot find crds/{CRD_FILE} (the simulator validates manifests against it)")


def _lines(node: yaml.Node, path: tuple[str | int, ...], out: dict[tuple[str | int, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                out[(*path, key.value)] = key.start_mark.line + 1
                _lines(value, (*path, key.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*path, index), out)


def line_of(lines: Mapping[tuple[str | int, ...], int], path: tuple[str | int, ...]) -> int | None:
    """The line of ``path`` or of its nearest ancestor present in the file."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def read_text(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None


def load(path: str, text: str | None = None) -> Manifest:
    text = read_text(path) if text is None else text
    try:
        docs = [d for d in yaml.compose_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise InputError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if len(docs) != 1:
        raise InputError(f"{path}: expected exactly one ScaledApp document, found {len(docs)}")
    lines: dict[tuple[str | int, ...], int] = {}
    _lines(docs[0], (), lines)
    body = yaml.safe_load(text)
    return from_body(path, body, lines)


def from_body(path: str, body: Any, lines: Mapping[tuple[str | int, ...], int] | None = None) -> Manifest:
    lines = lines or {}

    def fail(errors: list[schema.FieldError]) -> InputError:
        rendered = []
        for e in errors:
            line = line_of(lines, e.at if e.at is not None else e.path)
            rendered.append(f"{path}:{line}: {e}" if line else f"{path}: {e}")
        kind = body.get("kind", "ScaledApp") if isinstance(body, Mapping) else "ScaledApp"
        name = _name(body)
        head = f'{path}: the {kind} "{name}" is invalid:' if name else f"{path}: the {kind} is invalid:"
        return InputError("\n".join([head, *(f"  {r}" for r in rendered)]))

    if not isinstance(body, Mapping):
        raise fail([schema.FieldError((), f"expected a ScaledApp object, got {schema.type_name(body)}")])
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version != f"{GROUP}/{VERSION}" or kind != "ScaledApp":
        raise fail(
            [
                schema.FieldError(
                    ("kind",),
                    f"expected apiVersion {GROUP}/{VERSION} and kind ScaledApp, "
                    f"got {api_version!r} / {kind!r}",
                )
            ]
        )
    if not _name(body):
        raise fail(
            [schema.FieldError(("metadata", "name"), "Required value: name or generateName is required")]
        )
    crd = crd_schema()
    errors = schema.unknown_fields(body, crd)
    if errors:
        raise fail(errors)
    defaulted = schema.apply_defaults(body, crd)
    errors = schema.validate(defaulted, crd)
    if errors:
        raise fail(errors)
    if cel.available():
        errors = cel.check(defaulted, crd)
        if errors:
            raise fail(errors)
    errors = source_errors(defaulted.get("spec") or {})
    if errors:
        raise fail(errors)
    try:
        spec = parse(defaulted.get("spec") or {})
    except SpecError as e:
        raise fail([schema.FieldError(("spec",), str(e))]) from None
    return Manifest(path=path, name=_name(body), body=defaulted, spec=spec)


def source_errors(spec: Mapping[str, Any]) -> list[schema.FieldError]:
    """What a metric source's own parser rejects (e.g. an unknown cron time zone), per metric."""
    errors = []
    for index, metric in enumerate(spec.get("metrics") or []):
        try:
            parse_source(metric)
        except SourceError as e:
            errors.append(schema.FieldError(("spec", "metrics", index, str(metric.get("type"))), str(e)))
    return errors


def _name(body: Any) -> str:
    meta = body.get("metadata") if isinstance(body, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else ""
