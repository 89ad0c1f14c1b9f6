"""Pure computations behind the benchmark's figures: no I/O, no cluster, unit-tested
(tests/unit/test_bench_figures.py).

Kept apart from the scenarios so that what a printed number means can be read (and tested) without
the machinery that measures it: a histogram quantile from ``/metrics`` text, the slope of an RSS
soak, writes per object by verb and resource, whether a status disagrees with its child, and
whether the floor's kopf settings are kopfscale's.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
#: POSTs that store nothing: an API server's delegated authentication and authorization checks
#: (KEDA's metrics server makes one per HPA query). Counted as requests, not as writes.
REVIEWS = ("tokenreviews", "subjectaccessreviews", "selfsubjectaccessreviews", "localsubjectaccessreviews")


def is_write(key: str) -> bool:
    """Whether a ``"VERB resource"`` counter is a write (a review is not)."""
    verb, _, resource = key.partition(" ")
    return verb in WRITE_VERBS and resource not in REVIEWS


# --- Prometheus histograms (the operator's /metrics) -------------------------------------------------
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Buckets = list[tuple[float, float]]  # (upper bound "le", cumulative count), ascending; +Inf last


def histogram(text: str, name: str) -> Buckets:
    """The cumulative buckets of histogram ``name`` in Prometheus text, summed over its other labels
    (empty when the operator does not export it)."""
    sums: dict[float, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match["name"] != f"{name}_bucket":
            continue
        labels = dict(_LABEL.findall(match["labels"] or ""))
        le = labels.get("le")
        if le is None:
            continue
        bound = math.inf if le in ("+Inf", "Inf") else float(le)
        sums[bound] = sums.get(bound, 0.0) + float(match["value"])
    return sorted(sums.items())


def counter_by_label(text: str, name: str, label: str) -> dict[str, float]:
    """A counter's samples in Prometheus text summed by one label's value (``""`` when it has none)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match["name"] != name:
            continue
        value = dict(_LABEL.findall(match["labels"] or "")).get(label, "")
        out[value] = out.get(value, 0.0) + float(match["value"])
    return out


def bucket_delta(after: Buckets, before: Buckets) -> Buckets:
    """What was observed between two scrapes (a missing ``before`` counts as zeros)."""
    earlier = dict(before)
    return [(le, count - earlier.get(le, 0.0)) for le, count in after]


def histogram_count(buckets: Buckets) -> float:
    return buckets[-1][1] if buckets else 0.0


def histogram_quantile(q: float, buckets: Buckets) -> float:
    """The q-quantile (0..1) as Prometheus's ``histogram_quantile`` estimates it: linear within the
    bucket it falls in; the highest finite bound when it falls in +Inf; NaN without observations."""
    total = histogram_count(buckets)
    if total <= 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def fraction_within(buckets: Buckets, bound: float) -> float:
    """Exact share of observations <= ``bound`` when ``bound`` is a bucket edge (else the next edge up)."""
    total = histogram_count(buckets)
    if total <= 0:
        return math.nan
    for le, count in buckets:
        if le >= bound:
            return count / total
    return 1.0


# --- soak: does RSS stop growing? ---------------------------------------------------------------------
def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (NaN for fewer than two distinct x)."""
    if len(points) < 2:
        return math.nan
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def tail(points: Sequence[tuple[float, float]], span: float) -> list[tuple[float, float]]:
    """The points of the last ``span`` (in x units) of the series."""
    if not points:
        return []
    last = points[-1][0]
    return [p for p in points if p[0] >= last - span]


# --- writes per object ------------------------------------------------------------------------------
def writes_per_object(by_key: Mapping[str, int], objects: int) -> dict[str, float]:
    """Writes (``"VERB resource"`` -> count, as the proxy counts them) divided by ``objects``, largest
    first, plus ``"total"``; empty for no objects."""
    if objects <= 0:
        return {}
    writes = {k: n / objects for k, n in by_key.items() if is_write(k) and n > 0}
    ordered = dict(sorted(writes.items(), key=lambda kv: -kv[1]))
    ordered["total"] = sum(writes.values())
    return ordered


# --- status never stale -----------------------------------------------------------------------------
def _int(mapping: Mapping[str, Any] | None, key: str) -> int:
    return int((mapping or {}).get(key) or 0)


def _ready_condition(status: Mapping[str, Any] | None) -> str | None:
    for c in (status or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return str(c.get("status"))
    return None


def greeter_staleness(greeter: Mapping[str, Any], deployment: Mapping[str, Any] | None) -> str | None:
    """Why the Greeter's status disagrees with its Deployment, or None when it agrees (or there is
    no Deployment to agree with yet). Compared: ``readyReplicas`` and ``replicas`` with the
    Deployment's status, and ``Ready=True`` with "every desired replica is ready"."""
    if deployment is None:
        return None
    status, live = greeter.get("status") or {}, deployment.get("status") or {}
    for key in ("readyReplicas", "replicas"):
        if _int(status, key) != _int(live, key):
            return f"{key} {_int(status, key)} != Deployment's {_int(live, key)}"
    desired = _int(deployment.get("spec"), "replicas")
    all_ready = (
        _int(live, "readyReplicas") >= desired
        and _int(live, "updatedReplicas") >= desired
        and _int(live, "replicas") <= desired
    )
    says_ready = _ready_condition(status) == "True"
    if says_ready != all_ready:
        return (
            f"Ready={'True' if says_ready else 'not True'} but {_int(live, 'readyReplicas')}/{desired} ready"
        )
    return None


def scaledapp_staleness(app: Mapping[str, Any], deployment: Mapping[str, Any] | None) -> str | None:
    """Why the ScaledApp's ``status.replicas`` disagrees with its Deployment's ``spec.replicas``
    (the count it scaled to), or None."""
    if deployment is None:
        return None
    said, truth = _int(app.get("status"), "replicas"), _int(deployment.get("spec"), "replicas")
    return None if said == truth else f"status.replicas {said} != Deployment spec.replicas {truth}"


# --- the floor's kopf settings against kopfscale's ----------------------------------------------------
def _describe(value: Any) -> Any:
    """A comparable, printable form of one kopf setting (storages by class and their fields,
    selector mappings as sorted pairs, executors skipped: a new one per settings object)."""
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, tuple | list):
        return [_describe(v) for v in value]
    if hasattr(value, "items") and callable(value.items):
        pairs = [(str(k), _describe(v)) for k, v in value.items()]
        return sorted(pairs)
    if hasattr(value, "__dict__"):
        fields = {k: _describe(v) for k, v in sorted(vars(value).items()) if not k.startswith("__")}
        return {"class": type(value).__name__, **fields}
    return repr(value)


#: Per-process or per-host values (they differ between any two processes and say nothing of cost),
#: and kopf's deprecated no-op batching window (setting it only warns).
IGNORED_SETTINGS = frozenset({"execution.executor", "posting.reporting_instance", "queueing.batch_window"})


def settings_fingerprint(settings: Any) -> dict[str, Any]:
    """``"section.field"`` -> described value, for every field of a ``kopf.OperatorSettings``."""
    out: dict[str, Any] = {}
    for section in dataclasses.fields(settings):
        part = getattr(settings, section.name)
        names = [f.name for f in dataclasses.fields(part)] if dataclasses.is_dataclass(part) else []
        for name in names:
            key = f"{section.name}.{name.lstrip('_')}"
            if key not in IGNORED_SETTINGS:
                out[key] = _describe(getattr(part, name))
    return out


#: Sections the floor must not take from kopfscale's configure: set by kopf's command line
#: (--standalone, peering) or by kopfscale's wiring, not by ``configure``.
NOT_COPIED_SECTIONS = ("peering", "admission", "scanning")


def plain_settings(settings: Any) -> dict[str, Any]:
    """``"section.field"`` -> value for every kopf setting that is a plain value (numbers, strings,
    flags, tuples or lists of them): what the floor copies from kopfscale's settings at run time."""
    out: dict[str, Any] = {}
    for section in dataclasses.fields(settings):
        if section.name in NOT_COPIED_SECTIONS:
            continue
        part = getattr(settings, section.name)
        for f in dataclasses.fields(part) if dataclasses.is_dataclass(part) else []:
            key = f"{section.name}.{f.name.lstrip('_')}"
            value = getattr(part, f.name)
            atom = isinstance(value, str | int | float | bool) or value is None
            atoms = isinstance(value, tuple | list) and all(isinstance(v, int | float | str) for v in value)
            if key not in IGNORED_SETTINGS and (atom or atoms):
                out[key] = list(value) if atoms else value
    return out


def settings_differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """``key: ours vs theirs`` for every setting that differs."""
    return [
        f"{key}: {ours.get(key)!r} vs {theirs.get(key)!r}"
        for key in sorted(set(ours) | set(theirs))
        if ours.get(key) != theirs.get(key)
    ]


# --- small formatting helpers -------------------------------------------------------------------------
def ratio(a: float, b: float) -> float:
    """a / b, NaN when either is missing or b is 0."""
    if b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def pairwise_ratios(a: Iterable[float], b: Iterable[float]) -> list[float]:
    """Ratios of runs measured side by side (run i of a over run i of b)."""
    return [ratio(x, y) for x, y in zip(a, b, strict=False)]
